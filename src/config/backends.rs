//! `[backends.*]`: each table handed to its backend's `parse_config` by `type`.

use super::check::*;
use super::tree::Table;
use super::{BACKEND_TYPES, BackendConfig, FileBackendConfig};
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
