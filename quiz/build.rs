//! The bundled question set is YAML for people to edit; at start quiz reads it as JSON made
//! here, at build time, because parsing the YAML was a sixth of quiz's start-up time (bench:
//! "quiz start to ready"). The file is checked fully at start all the same.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=questions.yaml");
    let yaml = std::fs::read_to_string("questions.yaml").expect("quiz/questions.yaml is readable");
    let questions: serde_json::Value =
        serde_yaml_ng::from_str(&yaml).expect("quiz/questions.yaml is valid YAML");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("questions.json"),
        serde_json::to_string(&questions).expect("JSON from parsed YAML"),
    )
    .expect("OUT_DIR is writable");
}
