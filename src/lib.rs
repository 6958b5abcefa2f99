//! rekey: a credential-rotation worker for SaaS security platforms.
//!
//! The binary is a thin shell around this library; see docs/src/architecture.md for the architecture.

// `print!` and `eprintln!` panic when their stream fails (a reader gone, a full disk): output
// goes through src/app/output.rs instead.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod app;
pub mod backend;
/// The inventory's building blocks, below the parser and every module it calls.
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crash;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod harden;
pub mod http;
pub mod layer;
pub mod logging;
pub mod observe;
pub mod os;
pub mod plan;
pub mod provider;
pub mod record;
pub mod schedule;
pub mod scrub;
pub mod secret;
pub mod shard;
pub mod terminal;
