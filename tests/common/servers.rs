//! Loopback stand-ins for servers a test cannot run for real (a chat webhook, a redirecting
//! proxy): raw HTTP/1.1 on 127.0.0.1, one request per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as a stand-in received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Everything read, head and body, as text.
    pub raw: String,
    /// The body, when the whole request (head, then `Content-Length` bytes) arrived.
    pub body: Option<String>,
}

impl Request {
    pub fn complete(&self) -> bool {
        self.body.is_some()
    }
}

/// Reads one request off `sock`: the head, then as many body bytes as its `Content-Length`
/// says. Stops early (`body` none) when the peer closes or the read fails.
pub async fn read_request(sock: &mut TcpStream) -> Request {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let body = loop {
        let k = sock.read(&mut chunk).await.unwrap_or(0);
        if k == 0 {
            break None;
        }
        buf.extend_from_slice(&chunk[..k]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(i) = text.find("\r\n\r\n") {
            let len: usize = text[..i]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= i + 4 + len {
                break Some(String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string());
            }
        }
    };
    Request {
        raw: String::from_utf8_lossy(&buf).to_string(),
        body,
    }
}

/// A loopback server: for each connection (numbered from 1 in the order accepted) it reads one
/// request and, if `answer(n, &request)` gives a response (head and body), writes it; then it
/// closes the connection.
pub async fn serve_raw(
    answer: impl Fn(usize, &Request) -> Option<String> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let request = read_request(&mut sock).await;
                if let Some(response) = answer(n, &request) {
                    let _ = sock.write_all(response.as_bytes()).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

/// An empty response with `status` (e.g. `200 OK`).
pub fn empty_response(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

/// A stand-in for a chat webhook at `http://<addr><path>`: answers `status(n)` to the n-th
/// request and hands the body of each whole request it answered 200 to the test.
pub async fn webhook_receiver(
    path: &str,
    status: impl Fn(usize) -> &'static str + Send + Sync + 'static,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_raw(move |n, req| {
        let status = status(n);
        if status.starts_with("200")
            && let Some(b) = &req.body
        {
            let _ = tx.send(b.clone());
        }
        Some(empty_response(status))
    })
    .await;
    (format!("http://{addr}{path}"), rx)
}

/// A system tool the tests need (promtool, prometheus, prometheus-pushgateway): its path, or a
/// clear failure (never a skip) naming the setup script that installs it.
pub fn tool(name: &str) -> String {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    match found {
        Some(p) => p.to_string_lossy().into_owned(),
        None => panic!(
            "{name} is not installed: run scripts/setup-system.sh (Debian packages prometheus, prometheus-pushgateway)"
        ),
    }
}

/// A free loopback port (bound, then released for the server that takes it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real server child process on 127.0.0.1, killed (by its pid) when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    /// Its working directory (configuration, storage), removed when dropped.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `cmd` and polls `{url}/-/ready` until it answers 200 (both Prometheus and the
    /// Pushgateway have that endpoint), or fails the test after 30 s.
    async fn start(mut cmd: std::process::Command, url: String, dir: tempfile::TempDir) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Server { child, url, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(r) = rekey::http::client()
                .get(format!("{}/-/ready", s.url))
                .send()
                .await
                && r.status().is_success()
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not become ready:\n{}",
                s.url,
                std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// GET `path` on the server; the body as text.
    pub async fn get(&self, path: &str) -> String {
        rekey::http::client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Pushgateway (Debian `prometheus-pushgateway`) on a free loopback port.
pub async fn pushgateway() -> Server {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(tool("prometheus-pushgateway"));
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Server::start(cmd, format!("http://127.0.0.1:{port}"), dir).await
}

/// A real Prometheus server (Debian `prometheus`) on a free loopback port, with `config` as
/// its configuration file and each `(name, text)` of `files` written beside it (rule files).
pub async fn prometheus(config: &str, files: &[(&str, &str)]) -> Server {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut cmd = std::process::Command::new(tool("prometheus"));
    cmd.current_dir(dir.path())
        .arg("--config.file=prometheus.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Server::start(cmd, format!("http://127.0.0.1:{port}"), dir).await
}

/// A platform that is down for maintenance: every request gets 503 with `Retry-After: 3600`,
/// longer than rekey ever backs off, so a run gives up at once (exit 4). Its base URL.
pub async fn down_platform() -> String {
    let addr = serve_raw(|_, _| {
        Some(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 3600\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_string(),
        )
    })
    .await;
    format!("http://{addr}")
}
