//! The file backend passes the conformance suite.

mod conformance;
use async_trait::async_trait;
use conformance::backend::{self, Harness};
use rekey::backend::Backend;
use rekey::backend::file::{FileBackend, FileBackendConfig};
use rekey::config::ValueRef;
use std::sync::Arc;

struct FileHarness {
    root: tempfile::TempDir,
}

#[async_trait]
impl Harness for FileHarness {
    async fn backend(&self) -> Arc<dyn Backend> {
        let dir = tempfile::tempdir_in(self.root.path()).unwrap().keep();
        let key = dir.join("id.key");
        rekey::backend::file::generate_identity(&key).unwrap();
        let cfg = FileBackendConfig {
            name: "conf".into(),
            path: dir.join("store"),
            identity: ValueRef::File(key),
            recipients: vec![],
        };
        Arc::new(FileBackend::open(&cfg).unwrap())
    }

    async fn write_foreign(&self, backend: &dyn Backend, slot: &str) {
        // Someone else's age file in the store, encrypted to the same key.
        let _ = backend;
        let store = std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("store").exists())
            .collect::<Vec<_>>();
        for dir in store {
            let key = std::fs::read_to_string(dir.join("id.key")).unwrap();
            let identity: age::x25519::Identity = key
                .lines()
                .find(|l| l.starts_with("AGE-SECRET-KEY"))
                .unwrap()
                .parse()
                .unwrap();
            let bytes = age::encrypt(&identity.to_public(), br#"{"hello":"not rekey's"}"#).unwrap();
            std::fs::write(dir.join("store").join(format!("{slot}.age")), bytes).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_backend_conformance() {
    let h = FileHarness {
        root: tempfile::tempdir().unwrap(),
    };
    assert_eq!(backend::run_all(&h).await, 11);
}
