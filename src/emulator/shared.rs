//! What every handler shares: the state under its lock and where it is saved, the token
//! settings, and the fault layer's state.

use super::faults::{FaultEngine, Faults, Stats};
use super::layer::Injector;
use super::world::World;
use crate::error::Result;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// State shared by all handlers.
pub(crate) struct Shared {
    pub(crate) state: tokio::sync::Mutex<World>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) token_ttl: Duration,
    /// Copied out of the state at start so verifying a token needs no lock.
    pub(crate) signing_key: Vec<u8>,
    pub(crate) injector: Arc<Injector>,
}

impl Shared {
    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultEngine> {
        self.injector.engine()
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.injector.stats()
    }

    pub(crate) fn echoed(&self) -> MutexGuard<'_, Vec<String>> {
        self.injector.echoed()
    }

    /// Replaces the faults (and so the random source and the token bucket).
    pub(crate) fn set_faults(&self, f: Faults) {
        self.injector.set_faults(f);
    }

    /// Writes the state file, if there is one. Callers hold the state lock (see
    /// [`World::save`]).
    pub(crate) fn save(&self, state: &World) -> Result<()> {
        match &self.state_file {
            Some(path) => state.save(path),
            None => Ok(()),
        }
    }
}
