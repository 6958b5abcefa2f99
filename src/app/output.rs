//! Everything a command prints on stdout (reports, `get`'s credential, `keygen`'s recipient)
//! goes through [`write`] (or the [`out!`](crate::out) and [`outln!`](crate::outln) macros),
//! never `print!`, which panics when stdout fails.
//!
//! - A reader that went away (`rekey plan -o json | head -c 300`): stdout answers `EPIPE`
//!   (rekey keeps SIGPIPE ignored, as Rust sets it, because it writes to sockets and plugin
//!   pipes that may close mid-rotation). The rest of the output is dropped and the command
//!   finishes its work (metrics, webhooks) with its own exit code, like a `head` reader
//!   expects.
//! - Any other write error (a full disk under `rekey get > file`) is an error of the command:
//!   exit 1 with a message that says the output is incomplete (docs/src/operating.md, "Exit
//!   codes"), never exit 0 with a truncated file.
//!
//! Each write is flushed at once, so a failure is seen here and not in the buffer flushed at
//! exit, whose errors nobody sees.
//!
//! The final error and the few other lines on stderr that are not logs go through
//! [`crate::terminal::error_line`] (the [`errln!`](crate::errln) macro), never `eprintln!`,
//! which panics too.

use crate::error::{Error, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader went away: later output is dropped without a write.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it. A closed reader is not an error (see the module).
pub fn write(text: &str) -> Result<()> {
    if READER_GONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    outcome(written)
}

/// Writes `value` to stdout as one line of JSON, serialized straight into a buffered stdout (a
/// `plan` of 100,000 slots is a 10 MB document: never held whole in memory, docs/src/benchmarks.md)
/// and flushed; the same rules as [`write`].
pub fn write_json<T: serde::Serialize>(value: &T) -> Result<()> {
    if READER_GONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let written = serde_json::to_writer(&mut stdout, value)
        // serde_json gives back the writer's own error for a failed write; anything else is a
        // value that cannot be JSON, which no report is.
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    outcome(written)
}

/// What a write's result means for the command: [`write`]'s rules, apart so they can be
/// tested without a stdout that fails.
fn outcome(written: std::io::Result<()>) -> Result<()> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
            tracing::debug!("stdout's reader went away; the rest of the output is dropped");
            Ok(())
        }
        // The error's text is the OS's (`No space left on device`), never the output's.
        Err(e) => Err(Error::internal(format!(
            "cannot write to stdout: {e}; the output is incomplete"
        ))),
    }
}

/// `print!` through [`write`]: evaluates to its `Result<()>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::app::output::write(&format!($($arg)*))
    };
}

/// `println!` through [`write`]: evaluates to its `Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::app::output::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::app::output::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reader_is_not_an_error_and_anything_else_is() {
        use std::io::{Error as IoError, ErrorKind};
        let full = outcome(Err(IoError::from_raw_os_error(28))).unwrap_err();
        let text = crate::error::chain(&full);
        assert!(text.contains("cannot write to stdout"), "{text}");
        assert!(text.contains("the output is incomplete"), "{text}");
        assert_eq!(
            crate::app::exit_code_for(&full),
            crate::error::exit::ATTENTION
        );
        assert!(outcome(Err(IoError::from(ErrorKind::BrokenPipe))).is_ok());
        assert!(READER_GONE.load(Ordering::Relaxed));
    }
}
