//! The in-process trace log of a test binary that drives library code directly (the provider
//! tests): everything every crate logs, at trace level, kept in one buffer that must never hold
//! a secret.

use super::World;
use rekey::secret::Secret;
use std::sync::{Mutex, OnceLock};

/// The buffer; the first call installs the subscriber (one per test binary).
pub fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: std::sync::Once = std::sync::Once::new();
    let buf = BUF.get_or_init(Default::default);
    INIT.call_once(|| {
        struct W;
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                log_buffer().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(|| W)
            .try_init()
            .expect("one subscriber per test binary");
    });
    buf
}

/// Asserts trace logging is on and no secret of `w`, nor `extra`, is in the log.
pub fn assert_logs_clean(w: &World, extra: &[&Secret]) {
    let text = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging is on"
    );
    w.assert_no_secrets(&text);
    for s in extra {
        assert!(
            !text.contains(s.expose()),
            "a secret appeared in the trace log"
        );
    }
}
