//! `[backends.*]`: each table handed to its backend's `parse_config` by `type`.

use super::{BACKEND_TYPES, BackendConfig, FileBackendConfig};
use crate::check::tree::Table;
use crate::check::*;
use std::collections::BTreeMap;

impl Checker {
    pub(super) fn backends(&mut self, root: &Table) -> BTreeMap<String, BackendConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named_tables(root, "backends") {
            let path = format!("backends.{name}");
            // An unknown type is still a defined backend: slots naming it are not also wrong.
            let config = match self.type_of(t, &path, BACKEND_TYPES) {
                Some("file") => {
                    BackendConfig::File(crate::backend::file::parse_config(self, name, t, &path))
                }
                Some("exec") => {
                    BackendConfig::Exec(crate::backend::exec::parse_config(self, name, t, &path))
                }
                Some("vault") => {
                    BackendConfig::Vault(crate::backend::vault::parse_config(self, name, t, &path))
                }
                Some("aws") => {
                    BackendConfig::Aws(crate::backend::aws::parse_config(self, name, t, &path))
                }
                _ => BackendConfig::File(FileBackendConfig::placeholder(name)),
            };
            out.insert(name.to_string(), config);
        }
        out
    }
}

impl BackendConfig {
    /// Opens the backend this entry describes, bare: the engine wraps it in the layer stack
    /// (src/layer/mod.rs). The backend modules never import the inventory.
    pub fn open(&self) -> crate::error::Result<std::sync::Arc<dyn crate::backend::Backend>> {
        use crate::backend::{exec, file, vault};
        use std::sync::Arc;
        match self {
            BackendConfig::File(c) => Ok(Arc::new(file::FileBackend::open(c)?)),
            BackendConfig::Exec(c) => Ok(Arc::new(exec::ExecBackend::open(c)?)),
            BackendConfig::Vault(c) => Ok(Arc::new(vault::VaultBackend::open(c)?)),
            // The SDK client is built when first used (loading the AWS chain is async).
            #[cfg(feature = "aws")]
            BackendConfig::Aws(c) => Ok(Arc::new(crate::backend::aws::AwsBackend::open(c))),
            #[cfg(not(feature = "aws"))]
            BackendConfig::Aws(c) => Err(crate::error::Error::config(format!(
                "backend {}: this build has no AWS Secrets Manager support (cargo feature `aws`)",
                c.name
            ))),
        }
    }
}
