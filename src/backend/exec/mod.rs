//! `type = "exec"`: an organisation's own secret store, as a program rekey runs.
//!
//! One call = one process: rekey writes one JSON request to the program's stdin and reads one
//! JSON response from its stdout (protocol `rekey-backend/1`, documented in docs/src/backends/exec.md). The
//! program gets a clean environment (only `PATH`, `HOME`, `LANG` and the variables the inventory
//! names in `pass_env`), so it never inherits rekey's bootstrap secrets. Its stderr is never
//! logged as is: it may echo what it was given.

mod config;

pub use config::ExecBackendConfig;
pub(crate) use config::parse_config;

use crate::error::{Error, ErrorKind, Result};
use crate::record::{SlotRecord, Versioned};
use crate::secret::Secret;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol name and version every request carries and every response must echo.
pub const PROTOCOL: &str = "rekey-backend/1";
/// Largest response rekey reads from a plugin.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Most of a plugin's stderr quoted in an error, after secrets are scrubbed from it.
const MAX_STDERR_QUOTE: usize = 300;

/// A request, as the plugin reads it from stdin.
#[derive(Serialize)]
struct Request<'a> {
    protocol: &'static str,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a SlotRecord>,
    /// For write and delete: the version the write is conditional on (`null`: must not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_version: Option<Option<u64>>,
}

/// A response, as the plugin writes it to stdout.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Response {
    protocol: String,
    ok: bool,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    record: Option<SlotRecord>,
    #[serde(default)]
    slots: Option<Vec<String>>,
    #[serde(default)]
    error: Option<PluginError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginError {
    /// `not_found`, `conflict`, `forbidden`, `unauthorized`, `unavailable`, `timeout`, `invalid`.
    kind: String,
    message: String,
}

pub struct ExecBackend {
    config: ExecBackendConfig,
}

impl ExecBackend {
    pub fn open(config: &ExecBackendConfig) -> Result<Self> {
        if config.command.is_empty() {
            return Err(Error::config(format!(
                "backend {}: no command",
                config.name
            )));
        }
        Ok(ExecBackend {
            config: config.clone(),
        })
    }

    /// Runs the plugin once. `scrub` holds the secrets of this request, removed from anything
    /// the plugin says before it can reach a message.
    async fn call(&self, request: &Request<'_>, scrub: &[&Secret]) -> Result<Response> {
        let what = format!(
            "backend {}: plugin {} {}",
            self.config.name, self.config.command[0], request.op
        );
        let mut cmd = tokio::process::Command::new(&self.config.command[0]);
        cmd.args(&self.config.command[1..])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout (or a dropped call) kills everything
            // it started, not only the direct child (docs/src/backends/exec.md).
            .process_group(0)
            .kill_on_drop(true);
        for name in ["PATH", "HOME", "LANG"]
            .iter()
            .map(|s| s.to_string())
            .chain(self.config.pass_env.iter().cloned())
        {
            if let Some(v) = std::env::var_os(&name) {
                cmd.env(name, v);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(ErrorKind::Unavailable, format!("{what}: cannot start it"))
                .with_source(e)
                .not_applied()
        })?;
        let mut group = ProcessGroup(child.id().and_then(|p| i32::try_from(p).ok()));
        // The request and the answer carry records, secrets included: zeroized on drop.
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(request)
                .map_err(|e| Error::internal(format!("{what}: encoding: {e}")))?,
        );
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let io = async {
            // A plugin that exits without reading its input is reported by its answer, not by
            // the broken pipe.
            let _ = stdin.write_all(&body).await;
            drop(stdin);
            let mut out = zeroize::Zeroizing::new(Vec::new());
            let mut err = zeroize::Zeroizing::new(Vec::new());
            // Over the stdout limit, stderr is not waited for: the plugin (or a process it
            // started) may hold it open while it keeps writing. It is killed just after.
            let over = tokio::sync::Notify::new();
            let read_out = async {
                let r = (&mut stdout)
                    .take(MAX_RESPONSE as u64 + 1)
                    .read_to_end(&mut out)
                    .await;
                if out.len() > MAX_RESPONSE {
                    over.notify_one();
                }
                r
            };
            let read_err = async {
                let drain = async {
                    let r = (&mut stderr).take(64 * 1024).read_to_end(&mut err).await;
                    // Past the cap, keep draining (and dropping): a chatty plugin never blocks.
                    let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
                    r
                };
                tokio::select! {
                    r = drain => r,
                    _ = over.notified() => Ok(0),
                }
            };
            let (o, e) = tokio::join!(read_out, read_err);
            o.and(e).map(|_| (out, err))
        };
        let (out, err) = match tokio::time::timeout(self.config.timeout, io).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("{what}: reading its answer"),
                )
                .with_source(e));
            }
            Err(_) => {
                group.kill();
                let _ = child.kill().await;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what}: no answer within {} (killed)",
                        humantime::format_duration(self.config.timeout)
                    ),
                ));
            }
        };
        if out.len() > MAX_RESPONSE {
            // It is still writing into a pipe nobody reads: stop it now rather than at timeout.
            group.kill();
            let _ = child.kill().await;
            return Err(Error::malformed(format!(
                "{what}: answer larger than {MAX_RESPONSE} bytes"
            )));
        }
        // Close our ends, so a plugin still writing (past the stderr cap) gets EPIPE and exits.
        drop((stdout, stderr));
        let status = match tokio::time::timeout(self.config.timeout, child.wait()).await {
            Ok(Ok(s)) => s,
            _ => {
                group.kill();
                let _ = child.kill().await;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{what}: did not exit after answering (killed)"),
                ));
            }
        };
        // It exited on its own: what it left running is its business, and its group id may
        // be reused once the group is empty.
        group.disarm();
        decode_response(&what, &out, status, &err, scrub)
    }
}

/// A plugin's process group (its pid: it is spawned with `process_group(0)`), killed with
/// SIGKILL when the call ends without the plugin exiting: on a timeout, an oversized answer, or
/// when the call's future is dropped (the run is shutting down).
struct ProcessGroup(Option<i32>);

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take()
            && pgid > 1
        {
            // SAFETY: killpg only sends a signal; the group is the plugin's own, created at
            // spawn, and the plugin has not been reaped yet, so its id cannot have been reused.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a plugin's answer means: its stdout, exit status and stderr become a response or an
/// error. No process, so the fuzz targets can feed it any answer.
pub(crate) fn decode_response(
    what: &str,
    out: &[u8],
    status: std::process::ExitStatus,
    err: &[u8],
    scrub: &[&Secret],
) -> Result<Response> {
    // Everything the plugin says loses every secret known here: this process's, the request's,
    // and those its own answer carries (a read's record), on every call, read included.
    // Built only when something is quoted: most calls quote nothing.
    let scrubber = std::cell::OnceCell::new();
    let scrubber = || {
        scrubber.get_or_init(|| {
            crate::scrub::Scrubber::known()
                .secrets(scrub.iter().copied())
                .answer_bytes(out)
        })
    };
    let stderr_quote = || {
        let s = tail(
            &scrubber().scrub(&String::from_utf8_lossy(err)),
            MAX_STDERR_QUOTE,
        );
        let s = s.trim().replace('\n', " | ");
        if s.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends: {s}")
        }
    };
    if out.len() > MAX_RESPONSE {
        return Err(Error::malformed(format!(
            "{what}: answer larger than {MAX_RESPONSE} bytes"
        )));
    }
    let response: Response = match serde_json::from_slice(out) {
        Ok(r) => r,
        Err(_) if !status.success() => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: exited with {status} without an answer{}",
                    stderr_quote()
                ),
            ));
        }
        // serde's message quotes unknown field names and strings of the wrong type (found by
        // fuzzing); the plugin may have put a secret of the request there, so the message is
        // scrubbed like stderr.
        Err(e) => {
            return Err(Error::malformed(format!(
                "{what}: the answer is not a {PROTOCOL} response ({}){}",
                tail(&scrubber().scrub(&e.to_string()), MAX_STDERR_QUOTE),
                stderr_quote()
            )));
        }
    };
    if response.protocol != PROTOCOL {
        return Err(Error::malformed(format!(
            "{what}: speaks {:?}, rekey speaks {PROTOCOL}",
            tail(&scrubber().scrub(&response.protocol), 100)
        )));
    }
    if !response.ok {
        let (kind, message) = match &response.error {
            Some(e) => (classify_plugin_error(&e.kind), e.message.clone()),
            None => (
                ErrorKind::Malformed,
                "ok = false without an error".to_string(),
            ),
        };
        let message = tail(&scrubber().scrub(&message), MAX_STDERR_QUOTE);
        return Err(Error::new(kind, format!("{what}: {message}")));
    }
    Ok(response)
}

/// A read's answer → the slot's record, refusing one that is not rekey's or not this slot's.
pub(crate) fn read_answer(backend: &str, slot: &str, r: Response) -> Result<Option<Versioned>> {
    match (r.record, r.version) {
        (None, _) => Ok(None),
        (Some(record), Some(version)) => {
            if !record.is_managed() || record.slot != slot {
                return Err(Error::conflict(format!(
                    "backend {backend}: the entry for {slot} is not rekey's"
                )));
            }
            Ok(Some(Versioned { record, version }))
        }
        (Some(_), None) => Err(Error::malformed(format!(
            "backend {backend}: read answered a record without a version"
        ))),
    }
}

/// The last `max` characters of `text` (errors are printed last).
fn tail(text: &str, max: usize) -> String {
    let n = text.chars().count();
    text.chars().skip(n.saturating_sub(max)).collect()
}

/// The one place plugin error kinds become rekey's.
fn classify_plugin_error(kind: &str) -> ErrorKind {
    match kind {
        "not_found" => ErrorKind::NotFound,
        "conflict" => ErrorKind::Conflict,
        "forbidden" => ErrorKind::Forbidden,
        "unauthorized" => ErrorKind::Unauthorized,
        "unavailable" => ErrorKind::Unavailable,
        "timeout" => ErrorKind::Timeout,
        "invalid" => ErrorKind::Invalid,
        _ => ErrorKind::Malformed,
    }
}

fn secrets_of(record: &SlotRecord) -> Vec<&Secret> {
    record
        .current
        .iter()
        .chain(record.pending.iter())
        .chain(record.draining.iter().map(|d| &d.credential))
        .map(|c| &c.secret)
        .collect()
}

fn request<'a>(op: &'static str, slot: Option<&'a str>) -> Request<'a> {
    Request {
        protocol: PROTOCOL,
        op,
        slot,
        record: None,
        expected_version: None,
    }
}

#[async_trait]
impl super::Backend for ExecBackend {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn capabilities(&self) -> super::BackendCapabilities {
        super::BackendCapabilities::default()
    }

    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        let r = self.call(&request("read", Some(slot)), &[]).await?;
        read_answer(&self.config.name, slot, r)
    }

    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        let mut req = request("write", Some(slot));
        req.record = Some(record);
        req.expected_version = Some(expected);
        let r = self.call(&req, &secrets_of(record)).await?;
        r.version.ok_or_else(|| {
            Error::malformed(format!(
                "backend {}: write answered no version",
                self.config.name
            ))
        })
    }

    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        let mut req = request("delete", Some(slot));
        req.expected_version = Some(Some(expected));
        self.call(&req, &[]).await.map(|_| ())
    }

    async fn list(&self, known: &std::collections::BTreeSet<String>) -> Result<Vec<String>> {
        let r = self.call(&request("list", None), &[]).await?;
        let mut names = r.slots.ok_or_else(|| {
            Error::malformed(format!(
                "backend {}: list answered no slots",
                self.config.name
            ))
        })?;
        names.retain(|n| !known.contains(n));
        Ok(names)
    }

    async fn check(&self) -> Result<()> {
        self.call(&request("check", None), &[]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_protocol_and_the_condition() {
        let rec = SlotRecord::new("s", "p", "1");
        let mut req = request("write", Some("s"));
        req.record = Some(&rec);
        req.expected_version = Some(None);
        let v: serde_json::Value = serde_json::to_value(&req).unwrap();
        assert_eq!(v["protocol"], PROTOCOL);
        assert_eq!(v["op"], "write");
        assert!(
            v["expected_version"].is_null() && v.get("expected_version").is_some(),
            "null means: must not exist"
        );
        let list = serde_json::to_value(request("list", None)).unwrap();
        assert!(list.get("slot").is_none() && list.get("expected_version").is_none());
    }

    #[test]
    fn plugin_error_kinds_map_to_rekey_kinds() {
        assert_eq!(classify_plugin_error("conflict"), ErrorKind::Conflict);
        assert_eq!(classify_plugin_error("not_found"), ErrorKind::NotFound);
        assert_eq!(classify_plugin_error("whatever"), ErrorKind::Malformed);
    }
}
