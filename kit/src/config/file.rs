//! Reading a file the operator hands a service (tips, questions, certificates), so that a bad
//! one is refused with a message instead of hanging or exhausting the service: only regular
//! files (after following symlinks, as a ConfigMap volume has them), never a FIFO or a device,
//! opened without blocking, and no larger than a limit.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The size limit of the files the services read: what one ConfigMap can hold.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {kind}, not a regular file; give a file (or a symlink to one)")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than {limit} bytes{}; use a smaller file", why_limit(*.limit))]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
}

/// What a limit is, when it is the ConfigMap's; another limit is only its number.
fn why_limit(limit: u64) -> &'static str {
    if limit == MAX_FILE_SIZE {
        " (1 MiB, the most a ConfigMap holds)"
    } else {
        ""
    }
}

/// The whole file as text, refused when it is not a regular file or holds more than `limit`
/// bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    // Looked at before opening: opening a FIFO for reading blocks until a writer comes.
    check(path, &std::fs::metadata(path).map_err(io)?, limit)?;
    // Non-blocking in case the path was swapped for a FIFO since; reads of a regular file
    // ignore the flag.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    check(path, &file.metadata().map_err(io)?, limit)?;
    // A file still growing is cut at the limit and refused, never read to the end.
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_owned(),
    })
}

fn check(path: &Path, meta: &std::fs::Metadata, limit: u64) -> Result<(), FileError> {
    let kind = meta.file_type();
    let not = |kind| {
        Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        })
    };
    if kind.is_dir() {
        return not("a directory");
    }
    if kind.is_fifo() {
        return not("a FIFO (named pipe)");
    }
    if kind.is_char_device() || kind.is_block_device() {
        return not("a device");
    }
    if kind.is_socket() {
        return not("a socket");
    }
    if !kind.is_file() {
        return not("not a regular file");
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.txt");
        std::fs::write(&ok, "hello").unwrap();
        assert_eq!(read_text(&ok, 10).unwrap(), "hello");
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read_text(&link, 10).unwrap(), "hello");

        let err = read_text(&ok, 4).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { limit: 4, .. }), "{err}");
        // The message names the limit that applied, and the ConfigMap only when it is its.
        assert!(
            err.to_string().contains("larger than 4 bytes; use"),
            "{err}"
        );
        assert!(!err.to_string().contains("MiB"), "{err}");
        let big = dir.path().join("big.txt");
        std::fs::write(&big, vec![b'a'; MAX_FILE_SIZE as usize + 1]).unwrap();
        let err = read_text(&big, MAX_FILE_SIZE).unwrap_err();
        assert!(
            err.to_string().contains("1 MiB, the most a ConfigMap"),
            "{err}"
        );
        let err = read_text(dir.path(), 10).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let err = read_text(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(err.to_string().contains("a device"), "{err}");

        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_text(&binary, 10),
            Err(FileError::NotText { .. })
        ));
        assert!(matches!(
            read_text(&dir.path().join("missing"), 10),
            Err(FileError::Io { .. })
        ));
    }
}
