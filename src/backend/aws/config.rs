//! `[backends.NAME]` with `type = "aws"`: the settings and their parser.

use crate::backend::common::valid_string;
use crate::check::Checker;
use crate::check::join;
use crate::check::tree::Table;
use std::fmt;
use std::time::Duration;

/// `type = "aws"`: one secret per slot in AWS Secrets Manager.
#[derive(Clone)]
pub struct AwsBackendConfig {
    pub name: String,
    /// Region; `None`: the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (https, or http to loopback only): VPC endpoints, tests.
    pub endpoint_url: Option<String>,
    /// Secret name prefix; a slot's secret is `<prefix><slot>`.
    pub prefix: String,
    /// KMS key for new secrets; `None`: the account's `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    /// Recovery window of deletes, 7 to 30 days.
    pub recovery_window_days: i64,
    /// Limit for one API operation, retries included.
    pub timeout: Duration,
}

impl fmt::Debug for AwsBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackendConfig")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("prefix", &self.prefix)
            .field("kms_key_id", &self.kms_key_id.as_ref().map(|_| "set"))
            .field("recovery_window_days", &self.recovery_window_days)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AwsBackendConfig {
    /// Defaults for everything but the name.
    pub fn new(name: &str) -> Self {
        AwsBackendConfig {
            name: name.to_string(),
            region: None,
            endpoint_url: None,
            prefix: "rekey/".to_string(),
            kms_key_id: None,
            recovery_window_days: 7,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Characters AWS allows in secret names.
fn is_valid_prefix(p: &str) -> bool {
    p.len() <= 400
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// Parses `[backends.NAME]` with `type = "aws"`, recording every problem in `c`. No I/O:
/// credentials come from the standard AWS chain when the backend is first used.
pub(crate) fn parse_config(c: &mut Checker, name: &str, t: &Table, path: &str) -> AwsBackendConfig {
    let mut cfg = AwsBackendConfig::new(name);
    c.known_keys(
        t,
        path,
        &[
            "type",
            "region",
            "endpoint_url",
            "prefix",
            "kms_key_id",
            "recovery_window_days",
            "timeout",
        ],
    );
    if let Some(r) = valid_string(
        c,
        t,
        path,
        "region",
        |r| {
            !r.is_empty()
                && r.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        },
        |r| format!("\"{r}\" is not an AWS region name (e.g. \"eu-west-1\")"),
    ) {
        cfg.region = Some(r.to_string());
    }
    if let Some((u, e)) = c.string(t, path, "endpoint_url") {
        let key = join(path, "endpoint_url");
        match crate::http::endpoint(u) {
            Err(msg) => c.err(e.line, key, msg),
            Ok(_) => cfg.endpoint_url = Some(u.trim().trim_end_matches('/').to_string()),
        }
    }
    if let Some(p) = valid_string(c, t, path, "prefix", is_valid_prefix, |p| {
        format!("\"{p}\" is not a valid secret name prefix (letters, digits and /_+=.@- only)")
    }) {
        cfg.prefix = p.to_string();
    }
    if let Some((k, e)) = c.string(t, path, "kms_key_id") {
        if k.trim().is_empty() {
            c.err(e.line, join(path, "kms_key_id"), "must not be empty");
        } else {
            cfg.kms_key_id = Some(k.trim().to_string());
        }
    }
    if let Some(n) = c.integer(t, path, "recovery_window_days", 7, 30) {
        cfg.recovery_window_days = n;
    }
    if let Some((d, _)) = c.duration(t, path, "timeout", false) {
        cfg.timeout = d;
    }
    cfg
}
