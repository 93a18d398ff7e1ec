//! The question set: the bundled one, or a file (JSON or YAML) given with `--questions-file`.
//!
//! File schema, a list of questions:
//!
//! ```yaml
//! - id: 1                      # positive integer, unique
//!   text: "What does …?"       # not empty
//!   answers: ["a", "b", "c"]   # at least two, none empty
//!   correctAnswerIndex: 0      # zero-based index into answers
//!   explanation: "Because …"   # optional, not empty when given; shown once answered
//! ```
//!
//! Unknown fields are rejected. The bundled set must give every question an explanation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `questions.yaml`, turned into JSON at build time (see `build.rs`).
const BUNDLED: &str = include_str!(concat!(env!("OUT_DIR"), "/questions.json"));

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Question {
    pub id: u32,
    pub text: String,
    pub answers: Vec<String>,
    pub correct_answer_index: usize,
    /// Why the correct answer is right; revealed only with the verdict on an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuestionsError {
    #[error("cannot read questions file: {0}")]
    Read(#[from] kit::config::file::FileError),
    #[error("questions file {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("questions file {path} is not valid YAML: {source}")]
    YamlShape {
        path: PathBuf,
        source: crate::yaml::YamlError,
    },
    #[error("questions file {path} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("questions file {path}: {source}")]
    Invalid { path: PathBuf, source: Invalid },
}

/// The first problem [`validate`] found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("holds no questions")]
    Empty,
    #[error("question {id}: {problem}")]
    Question { id: u32, problem: String },
}

pub fn bundled() -> Vec<Question> {
    let questions: Vec<Question> =
        serde_json::from_str(BUNDLED).expect("the bundled questions parse");
    validate(&questions).expect("the bundled questions are valid");
    if let Some(q) = questions.iter().find(|q| q.explanation.is_none()) {
        panic!("bundled question {} has no explanation", q.id);
    }
    questions
}

/// Reads and validates a questions file: JSON when it ends in `.json`, YAML otherwise.
pub fn from_file(path: &Path) -> Result<Vec<Question>, QuestionsError> {
    let text = kit::config::file::read_text(path, kit::config::file::MAX_FILE_SIZE)?;
    let path = path.to_owned();
    let questions: Vec<Question> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|source| QuestionsError::Json {
            path: path.clone(),
            source,
        })?
    } else {
        // Aliases and deep nesting are refused before serde_yaml_ng builds anything.
        crate::yaml::check(&text).map_err(|source| QuestionsError::YamlShape {
            path: path.clone(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|source| QuestionsError::Yaml {
            path: path.clone(),
            source,
        })?
    };
    validate(&questions).map_err(|source| QuestionsError::Invalid { path, source })?;
    Ok(questions)
}

/// The first problem found, naming the offending question.
pub fn validate(questions: &[Question]) -> Result<(), Invalid> {
    if questions.is_empty() {
        return Err(Invalid::Empty);
    }
    let mut ids = HashSet::new();
    for q in questions {
        let fail = |problem: String| Err(Invalid::Question { id: q.id, problem });
        if q.id == 0 {
            return fail("id must be a positive integer".into());
        }
        if !ids.insert(q.id) {
            return fail("duplicate id".into());
        }
        if q.text.trim().is_empty() {
            return fail("text is empty".into());
        }
        if q.answers.len() < 2 {
            return fail(format!(
                "needs at least two answers, has {}",
                q.answers.len()
            ));
        }
        if let Some(i) = q.answers.iter().position(|a| a.trim().is_empty()) {
            return fail(format!("answer {i} is empty"));
        }
        if q.correct_answer_index >= q.answers.len() {
            return fail(format!(
                "correctAnswerIndex {} is out of range for {} answers",
                q.correct_answer_index,
                q.answers.len()
            ));
        }
        if q.explanation.as_ref().is_some_and(|e| e.trim().is_empty()) {
            return fail("explanation is empty".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: u32, text: &str, answers: &[&str], correct: usize) -> Question {
        Question {
            id,
            text: text.into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            correct_answer_index: correct,
            explanation: None,
        }
    }

    #[test]
    fn bundled_questions_are_many_and_well_formed() {
        let questions = bundled();
        assert!(questions.len() >= 60, "only {}", questions.len());
        let ids: HashSet<_> = questions.iter().map(|q| q.id).collect();
        assert_eq!(ids.len(), questions.len(), "duplicate ids");
        for q in &questions {
            assert!((3..=4).contains(&q.answers.len()), "question {}", q.id);
            let distinct: HashSet<_> = q.answers.iter().map(|a| a.to_lowercase()).collect();
            assert_eq!(distinct.len(), q.answers.len(), "question {}", q.id);
            let explanation = q.explanation.as_deref().unwrap_or_default();
            assert!(
                !explanation.trim().is_empty(),
                "question {} has no explanation",
                q.id
            );
            for answer in &q.answers {
                let lower = answer.to_lowercase();
                assert!(
                    !lower.contains("all of the above") && !lower.contains("none of the above"),
                    "question {}: {answer}",
                    q.id
                );
            }
        }
        // The correct answer does not always sit in the same place.
        for position in 0..4 {
            let count = questions
                .iter()
                .filter(|q| q.correct_answer_index == position)
                .count();
            assert!(
                count * 100 <= questions.len() * 40,
                "position {position} is correct in {count} of {} questions",
                questions.len()
            );
        }
    }

    /// The correct answer must not give itself away by being the longest option.
    #[test]
    fn the_correct_answer_is_rarely_the_longest() {
        let questions = bundled();
        let longest: Vec<u32> = questions
            .iter()
            .filter(|q| correct_is_strictly_longest(q))
            .map(|q| q.id)
            .collect();
        assert!(
            longest.len() * 100 <= questions.len() * 35,
            "the correct answer is the longest in {} of {} questions: {longest:?}",
            longest.len(),
            questions.len()
        );
    }

    fn correct_is_strictly_longest(q: &Question) -> bool {
        let len = |i: usize| q.answers[i].chars().count();
        let correct = len(q.correct_answer_index);
        (0..q.answers.len()).all(|i| i == q.correct_answer_index || len(i) < correct)
    }

    #[test]
    fn longest_answer_check_sees_ties_and_wins() {
        assert!(correct_is_strictly_longest(&q(
            1,
            "Q?",
            &["abc", "ab", "a"],
            0
        )));
        assert!(!correct_is_strictly_longest(&q(
            1,
            "Q?",
            &["abc", "abc", "a"],
            0
        )));
        assert!(!correct_is_strictly_longest(&q(
            1,
            "Q?",
            &["a", "abc", "ab"],
            0
        )));
    }

    /// Two questions whose words (text and answers) overlap this much ask the same thing.
    const NEAR_IDENTICAL: f64 = 0.8;

    fn words(text: &str) -> HashSet<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    /// Jaccard similarity of two word sets: shared words over all words.
    fn similarity(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
        let union = a.union(b).count();
        if union == 0 {
            return 1.0;
        }
        a.intersection(b).count() as f64 / union as f64
    }

    #[test]
    fn no_two_bundled_questions_are_nearly_identical() {
        let questions = bundled();
        let sets: Vec<_> = questions
            .iter()
            .map(|q| (q.id, words(&format!("{} {}", q.text, q.answers.join(" ")))))
            .collect();
        for (i, (id_a, a)) in sets.iter().enumerate() {
            for (id_b, b) in &sets[i + 1..] {
                let s = similarity(a, b);
                assert!(
                    s < NEAR_IDENTICAL,
                    "questions {id_a} and {id_b} are nearly identical ({s:.2})"
                );
            }
        }
    }

    #[test]
    fn similarity_spots_reworded_duplicates() {
        let a = words("What does a ClusterIP Service give its clients?");
        let b = words("What does a ClusterIP Service give to its clients?");
        assert!(similarity(&a, &b) >= NEAR_IDENTICAL);
        let c = words("Which range does Kubernetes allocate node ports from?");
        assert!(similarity(&a, &c) < NEAR_IDENTICAL);
    }

    /// The example ConfigMap's set loads: one question explained, one not.
    #[test]
    fn the_example_custom_questions_load() {
        let config_map: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../examples/custom-questions.yaml")).unwrap();
        let text = config_map["data"]["questions.yaml"].as_str().unwrap();
        let questions: Vec<Question> = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(validate(&questions), Ok(()));
        assert!(questions[0].explanation.is_some());
        assert!(questions[1].explanation.is_none());
    }

    #[test]
    fn validation_names_the_offending_question() {
        let good = q(1, "Q?", &["a", "b"], 1);
        assert_eq!(validate(std::slice::from_ref(&good)), Ok(()));
        let cases = [
            (
                vec![good.clone(), q(1, "Again?", &["a", "b"], 0)],
                "question 1: duplicate id",
            ),
            (
                vec![q(2, "Q?", &[], 0)],
                "question 2: needs at least two answers, has 0",
            ),
            (
                vec![q(3, "Q?", &["a", "b"], 2)],
                "question 3: correctAnswerIndex 2 is out of range for 2 answers",
            ),
            (
                vec![q(4, "  ", &["a", "b"], 0)],
                "question 4: text is empty",
            ),
            (
                vec![q(5, "Q?", &["a", ""], 0)],
                "question 5: answer 1 is empty",
            ),
            (
                vec![q(0, "Q?", &["a", "b"], 0)],
                "question 0: id must be a positive integer",
            ),
            (
                vec![Question {
                    explanation: Some(" ".into()),
                    ..q(6, "Q?", &["a", "b"], 0)
                }],
                "question 6: explanation is empty",
            ),
            (vec![], "holds no questions"),
        ];
        for (questions, want) in cases {
            assert_eq!(validate(&questions).unwrap_err().to_string(), want);
        }
    }
}
