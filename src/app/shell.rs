//! `rekey completions SHELL` and `rekey man`: shell completions (clap_complete) and a man page
//! (clap_mangen), generated from the same command definition as `--help`, so they never drift.

use crate::cli::Cli;
use crate::error::{Error, Result};
use clap::CommandFactory;

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    // Made in memory first: clap_complete panics on a write error (`| head`).
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rekey", &mut out);
    print_all(&out)
}

pub fn man() -> Result<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Error::internal(format!("cannot render the man page: {e}")))?;
    print_all(&out)
}

/// Writes to stdout through [`crate::app::output`]: a reader that went away (`| head`) is not
/// an error.
fn print_all(bytes: &[u8]) -> Result<u8> {
    crate::app::output::write(&String::from_utf8_lossy(bytes))?;
    Ok(crate::error::exit::OK)
}
