//! The tips: parsing the fortune-style format, and re-reading the file when it changes.
//!
//! Format: tips separated by lines holding only `%` (as fortune files are); text around each
//! tip is trimmed, empty entries are skipped, a tip may span several lines.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

const BUNDLED: &str = include_str!("../tips.txt");

/// Default interval between checks of the tips file.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TipsError {
    #[error("cannot read tips file: {0}")]
    Read(#[from] kit::config::file::FileError),
    #[error("tips file {path} holds no tips (separate tips with lines holding only %)")]
    Empty { path: PathBuf },
}

/// The current set of tips, replaced whole on reload. Reading it writes to no shared memory
/// (arc-swap), so worker threads picking tips at once do not contend for a lock's cache line.
pub struct Tips {
    current: ArcSwap<Vec<Arc<str>>>,
}

impl Tips {
    pub fn bundled() -> Self {
        let tips = parse(BUNDLED);
        assert!(!tips.is_empty(), "the bundled tips are empty");
        Self::new(tips)
    }

    pub fn from_file(path: &Path) -> Result<Self, TipsError> {
        Ok(Self::new(read(path)?))
    }

    fn new(tips: Vec<Arc<str>>) -> Self {
        Tips {
            current: ArcSwap::from_pointee(tips),
        }
    }

    /// `f` applied to a tip picked uniformly at random. Never empty: every set holds at least
    /// one tip.
    pub fn with_random<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let tips = self.current.load();
        f(&tips[fastrand::usize(..tips.len())])
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<str>> {
        self.current.load().to_vec()
    }

    fn replace(&self, tips: Vec<Arc<str>>) {
        self.current.store(Arc::new(tips));
    }
}

pub fn parse(text: &str) -> Vec<Arc<str>> {
    let mut tips = Vec::new();
    let mut entry = String::new();
    for line in text.lines() {
        if line.trim_end() == "%" {
            push_entry(&mut tips, &mut entry);
        } else {
            entry.push_str(line);
            entry.push('\n');
        }
    }
    push_entry(&mut tips, &mut entry);
    tips
}

fn push_entry(tips: &mut Vec<Arc<str>>, entry: &mut String) {
    let tip = entry.trim();
    if !tip.is_empty() {
        tips.push(tip.into());
    }
    entry.clear();
}

fn read(path: &Path) -> Result<Vec<Arc<str>>, TipsError> {
    let text = kit::config::file::read_text(path, kit::config::file::MAX_FILE_SIZE)?;
    let tips = parse(&text);
    if tips.is_empty() {
        return Err(TipsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(tips)
}

/// Re-reads `path` whenever what it resolves to changes, keeping the previous tips when the new
/// file is bad. It polls the file's metadata rather than watching the file: a ConfigMap update
/// swaps the `..data` symlink of the mounted directory, which leaves the old file untouched and
/// so never shows up as an event on it, while the resolved inode does change.
///
/// `seen` is the file's [`fingerprint`] taken before the tips were loaded, so that a change made
/// while the service starts is not missed.
pub fn watch(tips: Arc<Tips>, path: PathBuf, mut seen: Option<Fingerprint>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let now = tokio::fs::metadata(&path).await.ok().map(|m| of(&m));
            if now == seen {
                continue;
            }
            seen = now;
            let path_for_read = path.clone();
            match tokio::task::spawn_blocking(move || read(&path_for_read)).await {
                Ok(Ok(new)) => {
                    tracing::info!(path = %path.display(), count = new.len(), "reloaded tips");
                    tips.replace(new);
                }
                Ok(Err(err)) => {
                    tracing::warn!("{err}; keeping the {} tips loaded before", tips.len())
                }
                Err(err) => tracing::warn!("tips reload failed: {err}"),
            }
        }
    });
}

/// Identifies the file's content without reading it: the resolved inode, size and mtime.
pub type Fingerprint = (u64, u64, u64, i64, i64);

pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().map(|m| of(&m))
}

fn of(m: &std::fs::Metadata) -> Fingerprint {
    (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_split_on_percent_lines_and_trimmed() {
        let tips = parse("first\n%\n\n  second\nline two  \n%\n%\n\nthird\n");
        let tips: Vec<&str> = tips.iter().map(|t| &**t).collect();
        assert_eq!(tips, ["first", "second\nline two", "third"]);
    }

    #[test]
    fn crlf_files_parse_too() {
        assert_eq!(parse("a\r\n%\r\nb\r\n").len(), 2);
    }

    /// The longest tip the page shows well.
    const MAX_TIP_LEN: usize = 300;

    /// Two tips whose word sets overlap this much (Jaccard similarity) say the same thing.
    const NEAR_IDENTICAL: f64 = 0.8;

    #[test]
    fn bundled_tips_are_many_distinct_and_short() {
        let tips = parse(BUNDLED);
        assert!(tips.len() >= 100, "only {} bundled tips", tips.len());
        let distinct: std::collections::HashSet<_> = tips.iter().collect();
        assert_eq!(distinct.len(), tips.len(), "duplicate bundled tips");
        for tip in &tips {
            assert!(
                tip.chars().count() <= MAX_TIP_LEN,
                "tip too long for a page: {tip}"
            );
            assert!(!tip.contains('%'), "stray separator in: {tip}");
        }
    }

    fn words(text: &str) -> std::collections::HashSet<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    fn similarity(
        a: &std::collections::HashSet<String>,
        b: &std::collections::HashSet<String>,
    ) -> f64 {
        let union = a.union(b).count();
        if union == 0 {
            return 1.0;
        }
        a.intersection(b).count() as f64 / union as f64
    }

    #[test]
    fn no_two_bundled_tips_are_nearly_identical() {
        let tips = parse(BUNDLED);
        let sets: Vec<_> = tips.iter().map(|t| words(t)).collect();
        for i in 0..tips.len() {
            for j in i + 1..tips.len() {
                let s = similarity(&sets[i], &sets[j]);
                assert!(
                    s < NEAR_IDENTICAL,
                    "nearly identical tips ({s:.2}):\n{}\n{}",
                    tips[i],
                    tips[j]
                );
            }
        }
    }

    #[test]
    fn similarity_spots_reworded_duplicates() {
        let a = words("Pod IPs change whenever a pod is replaced. Talk to Services, not pod IPs.");
        let b =
            words("Pod IPs change whenever a pod is replaced: talk to Services, not to pod IPs.");
        assert!(similarity(&a, &b) >= NEAR_IDENTICAL);
        let c = words("A Service balances connections, not requests.");
        assert!(similarity(&a, &c) < NEAR_IDENTICAL);
    }
}
