//! The question set: the bundled one, or a file (JSON or YAML) given with `--questions-file`.
//!
//! File schema, a list of questions:
//!
//! ```yaml
//! - id: 1                      # positive integer, unique
//!   text: "What does …?"       # not empty
//!   answers: ["a", "b", "c"]   # at least two, none empty
//!   correctAnswerIndex: 0      # zero-based index into answers
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const BUNDLED: &str = include_str!("../questions.yaml");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Question {
    pub id: u32,
    pub text: String,
    pub answers: Vec<String>,
    pub correct_answer_index: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum QuestionsError {
    #[error("questions file: {0}")]
    Read(#[from] kit::file::FileError),
    #[error("questions file {path} is not valid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("questions file {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

pub fn bundled() -> Vec<Question> {
    let questions: Vec<Question> =
        serde_yaml_ng::from_str(BUNDLED).expect("the bundled questions parse");
    validate(&questions).expect("the bundled questions are valid");
    questions
}

/// Reads and validates a questions file: JSON when it ends in `.json`, YAML otherwise.
pub fn from_file(path: &Path) -> Result<Vec<Question>, QuestionsError> {
    let text = kit::file::read_text(path, kit::file::MAX_FILE_SIZE)?;
    let parse_error = |format, message: String| QuestionsError::Parse {
        path: path.to_owned(),
        format,
        message,
    };
    let questions: Vec<Question> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| parse_error("JSON", e.to_string()))?
    } else {
        // Aliases and deep nesting are refused before serde_yaml_ng builds anything.
        crate::yaml::check(&text).map_err(|e| parse_error("YAML", e.to_string()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| parse_error("YAML", e.to_string()))?
    };
    validate(&questions).map_err(|problem| QuestionsError::Invalid {
        path: path.to_owned(),
        problem,
    })?;
    Ok(questions)
}

/// The first problem found, naming the offending question.
pub fn validate(questions: &[Question]) -> Result<(), String> {
    if questions.is_empty() {
        return Err("holds no questions".into());
    }
    let mut ids = HashSet::new();
    for q in questions {
        let fail = |problem: String| Err(format!("question {}: {problem}", q.id));
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
        }
    }

    #[test]
    fn bundled_questions_are_many_and_well_formed() {
        let questions = bundled();
        assert!(questions.len() >= 25, "only {}", questions.len());
        for q in &questions {
            assert!((3..=5).contains(&q.answers.len()), "question {}", q.id);
            let distinct: HashSet<_> = q.answers.iter().collect();
            assert_eq!(distinct.len(), q.answers.len(), "question {}", q.id);
        }
        // The correct answer should not always sit in the same place.
        let positions: HashSet<_> = questions.iter().map(|q| q.correct_answer_index).collect();
        assert!(positions.len() >= 3);
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
            (vec![], "holds no questions"),
        ];
        for (questions, want) in cases {
            assert_eq!(validate(&questions), Err(want.to_string()));
        }
    }
}
