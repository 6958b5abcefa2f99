//! The conformance suites, one per trait, run against real servers (docs/src/testing.md):
//!
//! - [`backend`]: every `Backend` (tests/conformance_{file,vault,aws,exec}.rs);
//! - [`provider`]: every `Provider`, against the emulator (tests/conformance_{taegis,cisco}.rs).
//!
//! A new backend or provider gets a test file that implements the suite's `Harness` and calls
//! its `run_all` (tests/README.md).

#![allow(dead_code)]

pub mod backend;
pub mod provider;
