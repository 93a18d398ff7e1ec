//! Limits a questions file meets before serde_yaml_ng reads it. serde_yaml_ng expands every
//! alias into a copy of what it names, so a small file of aliases to a large anchored value
//! grows to gigabytes, and it parses nesting thousands of levels deep slowly, while quiz is not
//! yet listening. A streaming parser walks the file once first, and stops at the first alias or
//! at a nesting deeper than any questions file needs.

use saphyr_parser::{Event, Parser};

/// Nesting of sequences and mappings allowed; a questions file needs three.
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("aliases (*name) are not allowed in a questions file (line {line})")]
    Alias { line: usize },
    #[error("nested more than {MAX_DEPTH} levels deep (line {line})")]
    TooDeep { line: usize },
    #[error("{0}")]
    Syntax(String),
}

pub fn check(text: &str) -> Result<(), YamlError> {
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            // The parser's own bound on flow nesting, deeper than ours, trips first there.
            if e.info().contains("recursion limit") {
                YamlError::TooDeep {
                    line: e.marker().line(),
                }
            } else {
                YamlError::Syntax(e.to_string())
            }
        })?;
        let line = span.start.line();
        match event {
            Event::Alias(_) => return Err(YamlError::Alias { line }),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(YamlError::TooDeep { line });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_files_pass() {
        let file =
            "- id: 1\n  text: \"Q? *not an alias*\"\n  answers: [a, b]\n  correctAnswerIndex: 0\n";
        assert_eq!(check(file), Ok(()));
        assert_eq!(check(include_str!("../questions.yaml")), Ok(()));
    }

    #[test]
    fn aliases_and_deep_nesting_are_refused() {
        let alias = "- id: 1\n  text: &t \"Q?\"\n  answers: [*t, b]\n  correctAnswerIndex: 0\n";
        assert_eq!(check(alias), Err(YamlError::Alias { line: 3 }));
        let deep = format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000));
        assert!(matches!(check(&deep), Err(YamlError::TooDeep { .. })));
        let deep_list = format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(matches!(check(&deep_list), Err(YamlError::TooDeep { .. })));
    }
}
