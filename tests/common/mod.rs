//! Shared test support, one file per concern (tests/README.md says which test uses what):
//!
//! - [`world`]: the test world: a real emulator in this process, a temp directory with an age
//!   identity, bootstrap files and an inventory, and the real `rekey` binary run in it;
//! - [`cisco`]: Cisco orgs on the same emulator ([`CiscoWorld`]);
//! - [`aws`]: AWS Secrets Manager (moto) as the primary backend;
//! - [`consistency`]: the one end-of-test check: nothing lost, nothing orphaned;
//! - [`crash`]: the crash-window loop (`REKEY_CRASH_AT`);
//! - [`providers`]: providers built in the test process, the emulator's faults and counters;
//! - [`logs`]: the in-process trace log that must hold no secret;
//! - [`python`]: the venv's Python, for the checks against official client libraries;
//! - [`servers`]: loopback stand-ins (webhooks, redirectors);
//! - [`secrets`]: the leak scan's test side.

#![allow(dead_code, unused_imports)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod cisco;
pub mod consistency;
pub mod crash;
pub mod logs;
pub mod providers;
pub mod python;
pub mod secrets;
pub mod servers;
pub mod world;

#[cfg(feature = "aws")]
pub use aws::*;
pub use cisco::*;
pub use crash::{HasWorld, SIGABRT, crash_windows};
pub use providers::provider_from_inventory;
pub use world::*;
