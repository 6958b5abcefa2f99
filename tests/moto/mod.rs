//! A real moto server (AWS Secrets Manager API) for the `aws` backend's tests, started from the
//! project venv (`scripts/setup-python.sh`) through `tests/python/moto_server.py` on a free
//! 127.0.0.1 port, and killed by pid on drop. A missing venv fails the test (never skips).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Static fake credentials: moto ignores them; no real credential is ever used in tests.
pub const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

pub struct Moto {
    child: Option<Child>,
    pub port: u16,
}

pub fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python venv at {}: run scripts/setup-python.sh",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto and waits (deadline 30 s) until it answers on its port.
    pub fn start() -> Moto {
        let python = venv_python();
        let launcher =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/moto_server.py");
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&python)
                .arg(&launcher)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto starts (run scripts/setup-python.sh)");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken meanwhile? try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto {
                        child: Some(child),
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start (is `moto==5.2.5` in the venv? run scripts/setup-python.sh)");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server now (by its pid) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An SDK configuration for this server with static fake credentials.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                    aws_sdk_secretsmanager::config::Credentials::new(
                        "testing",
                        "testing",
                        None,
                        None,
                        "static-test",
                    ),
                ),
            )
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build()
    }

    /// Runs a Python snippet (boto3 available) against this server with the fake credentials;
    /// returns stdout. Panics with stderr on failure.
    pub fn python(&self, code: &str) -> String {
        let out = Command::new(venv_python())
            .args(["-c", code])
            .envs(ENV.iter().copied())
            .env("MOTO_URL", self.url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
