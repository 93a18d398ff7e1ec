//! Text for curl's terminal: wrapped at 80 columns, and text from the network made harmless.
//! A backend's tip or error could hold escape sequences (which a terminal obeys: clear the
//! screen, retitle the window, rewrite what is shown) or a line that forges a section of the
//! text page; [`plain`] and [`one_line`] take both out. A leaf: every room may use it, it uses
//! nothing of kiada.

use std::borrow::Cow;
use std::fmt::Write;

/// What stands for a control character that was taken out.
const REPLACED: char = '\u{fffd}';

/// A control character a terminal may act on: C0 (but newline), DEL and C1.
fn control(c: char) -> bool {
    c != '\n' && (c.is_control())
}

/// Text from the network for a text page, newlines kept: every other control character is
/// replaced (a tab by a space), and a line that starts like a section heading (`====`) is
/// indented, so it cannot pass for one of the page's own.
pub fn plain(text: &str) -> Cow<'_, str> {
    let forged = text.starts_with("====") || text.contains("\n====");
    if !forged && !text.chars().any(control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.starts_with("====") {
            out.push(' ');
        }
        out.extend(line.chars().map(|c| match c {
            '\t' => ' ',
            c if control(c) => REPLACED,
            c => c,
        }));
    }
    Cow::Owned(out)
}

/// Text from the network for one line: [`plain`], with newlines as spaces.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(plain(&text.replace(['\r', '\n'], " ")).into_owned())
}

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
    fn escape_sequences_and_forged_sections_are_taken_out() {
        assert!(matches!(plain("A tip.\nTwo lines."), Cow::Borrowed(_)));
        assert_eq!(
            plain("red \u{1b}[31mtext\u{7}"),
            "red \u{fffd}[31mtext\u{fffd}"
        );
        assert_eq!(plain("a\tb\r\nc"), "a b\u{fffd}\nc");
        assert_eq!(plain("C1 \u{9b}2J"), "C1 \u{fffd}2J");
        assert_eq!(
            plain("tip\n==== REQUEST INFO\nforged"),
            "tip\n ==== REQUEST INFO\nforged"
        );
        assert_eq!(plain("==== STATUS"), " ==== STATUS");
        assert_eq!(
            one_line("first\nsecond\u{1b}]0;title\u{7}"),
            "first second\u{fffd}]0;title\u{fffd}"
        );
        assert!(matches!(one_line("plain words"), Cow::Borrowed(_)));
    }

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
