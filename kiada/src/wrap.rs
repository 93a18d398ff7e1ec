//! Text for curl, wrapped at 80 columns. A leaf: every room may use it, it uses nothing of
//! kiada.

use std::fmt::Write;

/// `text` wrapped at `width` columns, every line indented by `indent` spaces.
pub fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{:indent$}{line}", "");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{:indent$}{line}", "");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_in_80_columns() {
        let text = "Connected to 10.96.144.7:80, a virtual IP: kube-proxy passed the connection \
                    to the pod; a reused connection, request 7 on it.";
        let wrapped = wrap(text, 2, 80);
        assert!(
            wrapped
                .lines()
                .all(|l| l.len() <= 80 && l.starts_with("  "))
        );
        assert_eq!(
            wrapped.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
    }
}
