//! Text from outside shown to a person: bytes from a bundle, a repository
//! or a server, escaped before they reach a terminal or a log.
//!
//! A tar header name, an HTTP error body or a path in a manifest can hold
//! ESC sequences (which repaint or retitle an operator's terminal, or hide
//! the lines before them) and newlines (which forge log lines). Every
//! message that embeds such bytes passes them through [`escape`] or
//! [`escape_bytes`], so one message stays one line of visible characters.
//!
//! Shown escaped: C0 controls and DEL (`\n`, `\r`, `\t`, else `\x1b`),
//! C1 controls and the Unicode bidirectional and invisible format
//! characters (`\u{202e}`), and bytes that are not UTF-8 (`\xff`). A
//! backslash is left as it is, so that escaping text twice changes
//! nothing: a message built from escaped parts can be escaped again at the
//! edge without its backslashes doubling. The result is for reading, never
//! parsed back.

use std::fmt::Write;

/// `text` with every control and invisible format character escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_char(&mut out, c);
    }
    out
}

/// `bytes` as text: UTF-8 escaped like [`escape`], every byte that is not
/// part of valid UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `text` escaped like [`escape`], but its newlines kept: for a whole
/// message about to be printed, whose own lines are ferry's (a list of
/// differences, a TOML error's excerpt) and whose parts from outside
/// should already be escaped. Any control character that slipped through
/// still cannot reach the terminal raw.
pub fn escape_keeping_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_hidden(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// C1 controls, and format characters that reorder or hide text
/// (bidirectional overrides and isolates, zero-width characters, BOM).
fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_escaped_and_the_rest_as_is() {
        assert_eq!(
            escape("a\u{1b}[31mb\nc\r\td\u{7f}"),
            "a\\x1b[31mb\\nc\\r\\td\\x7f"
        );
        assert_eq!(
            escape("objects/ab12 caf\u{e9} \\x"),
            "objects/ab12 caf\u{e9} \\x"
        );
        assert_eq!(escape("\u{202e}gpj.exe\u{85}"), "\\u{202e}gpj.exe\\u{85}");
        assert_eq!(escape_bytes(b"ok\xff\xfe\x1b\n"), "ok\\xff\\xfe\\x1b\\n");
    }

    #[test]
    fn a_whole_message_keeps_its_lines() {
        assert_eq!(
            escape_keeping_lines("differences:\n  bin/\u{1b}[2Japp\r"),
            "differences:\n  bin/\\x1b[2Japp\\r"
        );
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        for text in ["\u{1b}]0;owned\u{7}", "a\nb", "\u{202e}x", "plain"] {
            let once = escape(text);
            assert_eq!(escape(&once), once);
            assert!(!once.chars().any(|c| c.is_control()), "{once}");
        }
    }
}
