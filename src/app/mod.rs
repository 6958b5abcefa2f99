//! The commands, each in the file named for it: `commands` (plan, apply, status, verify, get,
//! rollback, keygen and the rest), `check` (`rekey check`), `scheduler` (`rekey run`), `demo` (`rekey demo`),
//! `exec` (`rekey exec`), `shell` (`rekey completions`, `rekey man`), `store` (`rekey store
//! upgrade`) and `report` (the tables and JSON they print), `output` (stdout, where a closed reader is not a
//! panic). `main` parses,
//! sets up logging and hands each command to its file; each returns the process exit code
//! (docs/src/operating.md, "Exit codes").

pub mod check;
pub mod commands;
#[cfg(feature = "emulator")]
pub mod demo;
pub mod exec;
pub mod output;
pub mod report;
pub mod scheduler;
pub mod shell;
pub mod store;

pub use commands::exit_code_for;
