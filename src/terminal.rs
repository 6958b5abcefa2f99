//! The terminal: a progress bar on stderr for long runs, colours in reports on stdout. Both only
//! when the stream is a terminal and `NO_COLOR` is unset; never in JSON output.
//!
//! [`escape`] is the one function every human-facing output goes through (report tables, human
//! log lines): text from servers, plugins and the inventory may carry terminal escapes (ANSI
//! CSI, OSC title or clipboard sequences) or line breaks that would forge output. The error
//! paragraph of `main` goes through [`escape_paragraph`], which keeps its line breaks (one
//! inventory problem per line) but indents every line after the first, and is written by
//! [`error_line`], which never panics. JSON output needs none of it: serde escapes control characters.

use std::borrow::Cow;
use std::io::IsTerminal;

/// `text` with every control character (C0 including `\n`, `\r` and `\t`, DEL and the C1
/// range U+0080..U+009F) written as a visible escape such as `\u{1b}`. Text without any is
/// returned as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a paragraph of several lines (`main`'s error with its cause chain, such as
/// the inventory's list of problems, one per line): line feeds are kept, every other control
/// character is escaped, and each line after the first that does not start with whitespace is
/// indented by two spaces. Text quoted from outside (a plugin's stderr, a server's message) can
/// so never start a line at column 0, where it would pass for a line of rekey's own
/// (`rekey: ...`).
pub fn escape_paragraph(text: &str) -> Cow<'_, str> {
    let needs_indent = |line: &str| !line.is_empty() && !line.starts_with(char::is_whitespace);
    let plain = !text
        .split('\n')
        .enumerate()
        .any(|(i, line)| line.chars().any(is_control) || (i > 0 && needs_indent(line)));
    if plain {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        let line = escape(line);
        if i > 0 {
            out.push('\n');
            if needs_indent(&line) {
                out.push_str("  ");
            }
        }
        out.push_str(&line);
    }
    Cow::Owned(out)
}

fn is_control(c: char) -> bool {
    // `char::is_control` is the Cc category: U+0000..U+001F, U+007F..U+009F.
    c.is_control()
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colours in reports on stdout.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && !no_color()
}

/// A progress bar on stderr over `len` slots, or `None` when stderr is not a terminal.
pub fn progress(len: u64, verb: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || no_color() {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{verb} {{bar:40.cyan/blue}} {{pos:>4}}/{{len}} slots  {{elapsed_precise}}  {{wide_msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("█▉▊▋▌▍▎▏ ");
    pb.set_style(style);
    Some(pb)
}

const RED: &str = "\x1b[1;31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Colours a rendered report: words that need attention red, `ok` results green, skips
/// yellow, the header and the summary line bold. Column alignment is kept (codes are added
/// around words, never inside padding).
pub fn paint(report: &str) -> String {
    if !colour() {
        return report.to_string();
    }
    let lines: Vec<&str> = report.lines().collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let painted = if i == 0 {
            format!("{BOLD}{line}{RESET}")
        } else if Some(i) == last {
            let bad = line.contains("need") && !line.contains(" 0 need")
                || line.contains(" failed") && !line.contains(" 0 failed");
            format!("{}{line}{RESET}", if bad { RED } else { GREEN })
        } else {
            let mut l = format!(" {line} ");
            for w in ["FAILED", "OVERDUE", "MISSING", "INTERRUPTED", "ORPHANED"] {
                l = l.replace(&format!(" {w} "), &format!(" {RED}{w}{RESET} "));
            }
            l = l.replace(" ok ", &format!(" {GREEN}ok{RESET} "));
            l = l.replace(" skipped ", &format!(" {YELLOW}skipped{RESET} "));
            l[1..l.len() - 1].to_string()
        };
        out.push_str(&painted);
        out.push('\n');
    }
    out
}

/// Writes one line to stderr: the final error, and the few messages that are not logs. Any
/// failure is ignored: stderr is where failures are told, so there is nowhere left to tell
/// this one, and `eprintln!` would panic instead (`rekey plan 2>&1 | head -1` with a bad
/// inventory exited 101, not 2).
pub fn error_line(text: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.write_all(b"\n"))
        .and_then(|()| stderr.flush());
}

/// `eprintln!` through [`error_line`]: never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::terminal::error_line(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_writes_every_control_character_visibly() {
        assert_eq!(escape("plain text"), Cow::Borrowed("plain text"));
        assert_eq!(
            escape("a\nb\r\u{1b}[2J\u{9b}"),
            "a\\u{a}b\\u{d}\\u{1b}[2J\\u{9b}"
        );
    }

    #[test]
    fn a_paragraph_keeps_its_lines_and_indents_each_continuation() {
        // The inventory's problems: already indented, kept as they are.
        let list = "the inventory has 2 problems:\n  inv.toml:2: a\n  inv.toml:5: b";
        assert!(matches!(escape_paragraph(list), Cow::Borrowed(_)));
        assert_eq!(escape_paragraph(list), list);
        // Outside text cannot start a line at column 0 nor carry a raw control.
        let hostile = "plugin said: \u{1b}[31mFAKE OK\rline2\nrekey: all good\n\tx\n\n\u{9b}y";
        let shown = escape_paragraph(hostile);
        assert_eq!(
            shown,
            "plugin said: \\u{1b}[31mFAKE OK\\u{d}line2\n  rekey: all good\n  \\u{9}x\n\n  \\u{9b}y"
        );
        for line in shown.split('\n').skip(1) {
            assert!(line.is_empty() || line.starts_with(' '), "{line:?}");
        }
        assert!(
            !shown.chars().any(|c| c != '\n' && c.is_control()),
            "{shown:?}"
        );
    }
}
