//! The body of one webhook message in each format (`--webhook-format`), with its
//! `Content-Type`. Every format is built from the same [`Notice`], which holds no secret.

use super::{Notice, WebhookFormat};

/// The CloudEvents `type` of each notice: this prefix and the event's kind
/// (docs/src/notifications.md). A reverse-DNS name for rekey's own events, as the
/// CloudEvents spec asks of `type`.
pub const TYPE_PREFIX: &str = "io.rekey.credential.";

/// `(Content-Type, body)` of the message for `n`. `source` is the CloudEvents `source`.
pub fn body(format: WebhookFormat, source: &str, n: &Notice) -> (&'static str, Vec<u8>) {
    let (content_type, v) = match format {
        WebhookFormat::Generic => ("application/json", generic(n)),
        WebhookFormat::Cloudevents => ("application/cloudevents+json", cloudevent(source, n)),
        WebhookFormat::Slack => ("application/json", slack(n)),
    };
    (content_type, serde_json::to_vec(&v).unwrap_or_default())
}

fn generic(n: &Notice) -> serde_json::Value {
    serde_json::to_value(n).unwrap_or_default()
}

/// The CloudEvents `type` suffix of a notice: one per `--webhook-events` kind (a tampered
/// record is a `failed` one, its `data.event` and `data.error_kind` say which).
fn kind(event: &str) -> &'static str {
    match event {
        "rotated" => "rotated",
        "retired" => "retired",
        "slot_stuck" => "stuck",
        "run_failed" => "run_failed",
        "draining_in_use" => "draining_in_use",
        _ => "failed",
    }
}

/// CloudEvents 1.0, structured content mode: the context attributes beside `data` in one JSON
/// object, sent as `application/cloudevents+json`. `subject` is the slot (absent for a run
/// that failed as a whole); `data` is the generic notice.
fn cloudevent(source: &str, n: &Notice) -> serde_json::Value {
    let mut v = serde_json::json!({
        "specversion": "1.0",
        "id": n.id,
        "source": source,
        "type": format!("{TYPE_PREFIX}{}", kind(n.event)),
        "time": n.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": generic(n),
    });
    if !n.slot.is_empty() {
        v["subject"] = n.slot.clone().into();
    }
    v
}

/// Every byte but RFC 3986's unreserved characters (letters, digits, `-`, `.`, `_`, `~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one segment of a URI-reference (the CloudEvents `source` must be one): unreserved
/// characters kept, every other byte percent-encoded (an instance name may hold anything).
pub fn uri_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

fn slack(n: &Notice) -> serde_json::Value {
    let what = match n.event {
        "slot_failed" => "rotation failed",
        "slot_tampered" => "tampered record",
        "draining_in_use" => "old client still in use",
        "run_failed" => "run failed",
        _ => "slot stuck",
    };
    let text = match n.event {
        "rotated" => format!(
            ":arrows_counterclockwise: rekey: slot `{}` (provider {}, tenant {}) rotated on {}: {}\n{}",
            n.slot, n.provider, n.tenant, n.host, n.detail, n.action
        ),
        "retired" => format!(
            ":wastebasket: rekey: slot `{}` (provider {}, tenant {}) retired a previous client on {}: {}",
            n.slot, n.provider, n.tenant, n.host, n.detail
        ),
        _ if n.slot.is_empty() => format!(
            ":rotating_light: rekey: {what} on {}: {}\n{}",
            n.host, n.detail, n.action
        ),
        _ => format!(
            ":rotating_light: rekey: {what} for slot `{}` (provider {}, tenant {}) on {}: {}\n{}",
            n.slot, n.provider, n.tenant, n.host, n.detail, n.action
        ),
    };
    serde_json::json!({ "text": text })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_source_segment_is_percent_encoded() {
        assert_eq!(super::uri_segment("rekey-29001-xk2p"), "rekey-29001-xk2p");
        assert_eq!(super::uri_segment("eu west/1"), "eu%20west%2F1");
    }
}
