//! The metrics leaving the process: the textfile collector's file (written atomically, and read
//! back at the start of the next run for what a run must not lose), the Pushgateway's groups,
//! and the batch form of a one-shot run (see the parent module's doc).

use super::{LAST_SUCCESS, Metrics, SLOT_FAMILIES};
use crate::error::{Error, Result};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::collections::BTreeMap;
use std::path::Path;

impl Metrics {
    /// Seeds, from a previous metrics file, what a run must not lose: the last-success gauge
    /// (so a run in which a provider fails keeps reporting its previous success time) and the
    /// slot families (kept, marked stale, when this run cannot read its backend).
    pub fn load_previous(&self, path: &Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
            match name {
                LAST_SUCCESS => self
                    .last_success
                    .with_label_values(&[get("provider"), get("tenant")])
                    .set(v),
                "rekey_slots" => self.slots.with_label_values(&[get("state")]).set(v as i64),
                "rekey_credential_age_seconds" => self
                    .credential_age
                    .with_label_values(&[get("slot"), get("provider")])
                    .set(v),
                "rekey_credential_max_age_seconds" => self
                    .credential_max_age
                    .with_label_values(&[get("slot"), get("provider")])
                    .set(v),
                _ => {}
            }
        }
    }

    /// Writes the exposition to `path` atomically (temp file + rename in the same directory),
    /// as the textfile collector requires.
    pub fn write_file(&self, path: &Path, batch: bool) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |e: std::io::Error| {
            Error::unavailable(format!("writing metrics to {}: {e}", path.display()))
        };
        let text = if batch {
            self.encode_batch()
        } else {
            self.encode()
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Pushes to a Pushgateway, into the group of this instance and shard (`group`, e.g.
    /// `job="rekey", instance, shard`), so shards and instances never replace each other.
    ///
    /// - Everything but the last-success gauge replaces the group (PUT). When the slot
    ///   families are stale (this run could not read its backend), the push is a POST without
    ///   them, which replaces only the families it carries: the previous slot states and ages
    ///   stay in the group, beside `rekey_slot_metrics_stale 1`.
    /// - Each provider/tenant that succeeded in this run gets its own group (the group's labels
    ///   plus `provider`, `tenant`), so a run that fails leaves the previous success time in
    ///   place for the alert to see.
    pub async fn push(
        &self,
        base: &str,
        group: &[(&str, String)],
        successes: &[(String, String)],
        batch: bool,
    ) -> Result<()> {
        let base = base.trim_end_matches('/');
        let stale = self.stale.get() > 0;
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name() != LAST_SUCCESS)
            .filter(|f| !(stale && SLOT_FAMILIES.contains(&f.name())))
            .collect();
        let families = if batch {
            self::batch(families)
        } else {
            families
        };
        // rekey's shared settings: no redirect followed, no Referer (src/http.rs).
        let client = crate::http::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("http client: {e}")))?;
        // The job as is (`/metrics/job/rekey`, what a reader of the Pushgateway's log looks
        // for); every other label base64-encoded, as any value may hold `/` (the shard's does).
        let mut url = format!("{base}/metrics");
        for (k, v) in group {
            if *k == "job" {
                url.push_str(&format!("/job/{v}"));
            } else {
                url.push_str(&group_part(k, v));
            }
        }
        let method = if stale {
            reqwest::Method::POST
        } else {
            reqwest::Method::PUT
        };
        send(&client, method, &url, encode(&families)).await?;
        for (p, t) in successes {
            let v = self
                .last_success
                .get_metric_with_label_values(&[p, t])
                .map(|g| g.get())
                .unwrap_or_default();
            let body = format!(
                "# HELP {LAST_SUCCESS} Last time every slot of a provider and tenant ended a run without failure (Unix time).\n# TYPE {LAST_SUCCESS} gauge\n{LAST_SUCCESS} {v}\n"
            );
            let url = format!(
                "{url}{}{}",
                group_part("provider", p),
                group_part("tenant", t)
            );
            send(&client, reqwest::Method::PUT, &url, body).await?;
        }
        Ok(())
    }
}

/// One `/<label>@base64/<value>` part of a Pushgateway group's URL.
fn group_part(label: &str, value: &str) -> String {
    format!("/{label}@base64/{}", b64(value))
}

/// The batch exposition of `families` (see the module's doc): each counter `rekey_X_total`
/// becomes the gauge `rekey_last_run_X`; each histogram `rekey_X_duration_seconds` becomes two
/// gauges, `rekey_last_run_Xs` (calls) and `rekey_last_run_X_seconds` (their total time);
/// `rekey_runs_total` is left out (the run-level gauges say it).
pub(super) fn batch(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let gauge =
        |name: String, help: String, metrics: Vec<(Vec<prometheus::proto::LabelPair>, f64)>| {
            let mut f = MetricFamily::default();
            f.set_name(name);
            f.set_help(help);
            f.set_field_type(MetricType::GAUGE);
            f.set_metric(
                metrics
                    .into_iter()
                    .map(|(labels, v)| {
                        let mut m = prometheus::proto::Metric::default();
                        m.set_label(labels);
                        let mut g = prometheus::proto::Gauge::default();
                        g.set_value(v);
                        m.set_gauge(g);
                        m
                    })
                    .collect(),
            );
            f
        };
    let mut out = Vec::new();
    for f in families {
        let name = f.name().to_string();
        let stem = name.strip_prefix("rekey_").unwrap_or(&name);
        match f.get_field_type() {
            MetricType::COUNTER if name == "rekey_runs_total" => {}
            MetricType::COUNTER => {
                let stem = stem.strip_suffix("_total").unwrap_or(stem);
                let values = f
                    .get_metric()
                    .iter()
                    .map(|m| (m.get_label().to_vec(), m.get_counter().get_value()))
                    .collect();
                out.push(gauge(
                    format!("rekey_last_run_{stem}"),
                    format!("In the last run: {}", f.help()),
                    values,
                ));
            }
            MetricType::HISTOGRAM => {
                let stem = stem.strip_suffix("_duration_seconds").unwrap_or(stem);
                let (counts, sums) = f
                    .get_metric()
                    .iter()
                    .map(|m| {
                        let h = m.get_histogram();
                        (
                            (m.get_label().to_vec(), h.get_sample_count() as f64),
                            (m.get_label().to_vec(), h.get_sample_sum()),
                        )
                    })
                    .unzip();
                out.push(gauge(
                    format!("rekey_last_run_{stem}s"),
                    format!("In the last run, the number of calls: {}", f.help()),
                    counts,
                ));
                out.push(gauge(
                    format!("rekey_last_run_{stem}_seconds"),
                    format!("In the last run, the calls' total time: {}", f.help()),
                    sums,
                ));
            }
            _ => out.push(f),
        }
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// The label pairs of an exposition line's `a="x",b="y"` (with the format's escapes).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_string();
        if name.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => {}
                },
                c => value.push(c),
            }
        }
        out.insert(name, value);
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    if s.is_empty() {
        "=".into()
    } else {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    }
}

/// One PUT or POST. Messages show the URL without its user name and password
/// ([`crate::http::redact_url`]); the transport error is shown without its URL.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: String,
) -> Result<()> {
    let shown = crate::http::redact_url(url, crate::http::UrlPart::Path);
    let resp = client
        .request(method, url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| Error::unavailable(format!("pushgateway {shown}: {}", e.without_url())))?;
    if resp.status().is_redirection() {
        return Err(crate::http::redirect_error(
            &resp,
            &format!("pushgateway {shown}"),
            "configure the Pushgateway's own URL",
        ));
    }
    if !resp.status().is_success() {
        let status = resp.status();
        let text = crate::http::read_body(resp, "pushgateway")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        return Err(Error::unavailable(format!(
            "pushgateway {shown}: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    Ok(())
}

pub(super) fn encode(families: &[MetricFamily]) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(families, &mut buf)
        .expect("text encoding of gathered metrics");
    String::from_utf8(buf).expect("text exposition is UTF-8")
}
