//! `type = "file"`: the embedded default backend (age-encrypted records in a directory).
//! (Placeholder on this branch; the real implementation lands from the `cfg` branch.)

use crate::error::{Error, Result};
use crate::record::{SlotRecord, Versioned};
use async_trait::async_trait;

pub struct FileBackend;

impl FileBackend {
    pub fn open(_config: &crate::config::FileBackendConfig) -> Result<Self> {
        Err(Error::config("file backend not merged yet"))
    }
}

pub fn generate_identity(_path: &std::path::Path) -> Result<String> {
    Err(Error::config("file backend not merged yet"))
}

#[async_trait]
impl super::Backend for FileBackend {
    fn name(&self) -> &str {
        "file"
    }
    fn capabilities(&self) -> super::BackendCapabilities {
        super::BackendCapabilities::default()
    }
    async fn read(&self, _slot: &str) -> Result<Option<Versioned>> {
        unimplemented!()
    }
    async fn write(
        &self,
        _slot: &str,
        _record: &SlotRecord,
        _expected: Option<u64>,
    ) -> Result<u64> {
        unimplemented!()
    }
    async fn delete(&self, _slot: &str, _expected: u64) -> Result<()> {
        unimplemented!()
    }
    async fn list(&self) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn check(&self) -> Result<()> {
        unimplemented!()
    }
}
