//! The commands, each in the file named for it: `commands` (plan, apply, get, rollback, keygen
//! and the rest), `status` and `verify`, `check` (`rekey check`), `scheduler` (`rekey run`), `demo` (`rekey demo`),
//! `exec` (`rekey exec`), `shell` (`rekey completions`, `rekey man`), `store` (`rekey store
//! upgrade`) and `report` (the tables and JSON they print), `output` (stdout, where a closed reader is not a
//! panic), `setup` (the engine every command builds). `main` parses,
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
pub mod setup;
pub mod shell;
pub mod status;
pub mod store;
pub mod verify;

pub use commands::exit_code_for;
