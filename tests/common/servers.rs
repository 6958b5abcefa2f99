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
