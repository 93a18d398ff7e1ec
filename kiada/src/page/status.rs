//! The status message shown on every page. `INITIAL_STATUS_MESSAGE` sets it; each line typed
//! into the container's stdin replaces it (`kubectl attach -i`).

use std::io::BufRead;
use std::sync::{Arc, RwLock};

pub const DEFAULT: &str = "This is the default status message";

#[derive(Clone)]
pub struct Status(Arc<RwLock<Arc<str>>>);

impl Status {
    pub fn new(initial: &str) -> Self {
        Status(Arc::new(RwLock::new(initial.into())))
    }

    pub fn get(&self) -> Arc<str> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, message: &str) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = message.into();
    }

    /// Reads lines from `input` until it ends, each non-empty one becoming the status. Blocks:
    /// run it on its own thread. At end of input the status stays as it is; the thread simply
    /// returns (no busy loop, no exit).
    pub fn follow(&self, input: impl BufRead) {
        for line in input.lines() {
            let Ok(line) = line else { break };
            let message = line.trim();
            if message.is_empty() {
                eprintln!("Type a line of text and press Enter to replace the status message.");
                continue;
            }
            self.set(message);
            tracing::info!(status = message, "status message changed");
        }
        tracing::debug!("stdin closed; the status message stays as it is");
    }

    /// Follows the process's stdin on a background thread.
    pub fn follow_stdin(&self) {
        let status = self.clone();
        std::thread::Builder::new()
            .name("status-stdin".into())
            .spawn(move || status.follow(std::io::stdin().lock()))
            .expect("spawn the stdin thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_replaces_the_status_and_blank_lines_are_ignored() {
        let status = Status::new("initial");
        status.follow("first\n\n  second  \n".as_bytes());
        assert_eq!(&*status.get(), "second");
        status.follow("".as_bytes());
        assert_eq!(&*status.get(), "second");
    }
}
