//! The name a learner typed, checked: a DNS name, never an address or a URL.

use std::net::IpAddr;
use std::str::FromStr;

/// Why a name a learner typed cannot be looked up.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("give a name to look up, for example ?name=quiz")]
    Missing,
    #[error("'{0}' is an IP address: there is nothing to resolve; give a DNS name such as quiz")]
    Address(String),
    #[error("a DNS name has at most 253 characters; this one has {0}")]
    TooLong(usize),
    #[error("'{0}' is not a valid DNS name: each dot-separated part must be 1 to 63 characters")]
    LabelLength(String),
    #[error("'{0}' is not a valid DNS name: use letters, digits, '-' and '_' between dots")]
    Characters(String),
}

/// Checks a name a learner typed: a DNS name, not an address or a URL.
pub fn check_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Missing);
    }
    if IpAddr::from_str(name.trim_matches(|c| c == '[' || c == ']')).is_ok() {
        return Err(NameError::Address(name.to_owned()));
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.len() > 253 {
        return Err(NameError::TooLong(bare.len()));
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NameError::LabelLength(shorten(name)));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NameError::Characters(shorten(name)));
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(" Quiz ").unwrap(), "quiz");
        assert!(check_name("quiz.kiada.svc.cluster.local.").is_ok());
        assert!(
            check_name("10.96.0.10")
                .unwrap_err()
                .to_string()
                .contains("IP address")
        );
        assert!(matches!(check_name("::1"), Err(NameError::Address(_))));
        assert!(check_name("http://quiz/").is_err());
        assert!(check_name("a..b").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(
            check_name(&["a"; 130].join("."))
                .unwrap_err()
                .to_string()
                .contains("253")
        );
        assert!(check_name("").is_err());
    }
}
