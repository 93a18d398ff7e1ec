//! The two backends and the shapes of what quiz answers.

use serde::{Deserialize, Serialize};

/// Which backend; also the label in pages and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Quote,
    Quiz,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Quote => "quote",
            Backend::Quiz => "quiz",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Question {
    pub id: u32,
    pub text: String,
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerResult {
    pub question_id: u32,
    pub answer_index: usize,
    pub correct_answer_index: usize,
    pub correct: bool,
    /// Why the correct answer is right, when the question set gives a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    pub timestamp: String,
}
