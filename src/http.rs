//! The HTTP layer shared by providers: one client per process (so connections are reused),
//! TLS by rustls with verification always on, plain HTTP only to loopback, bounded response
//! sizes, transport-error classification, `Retry-After` parsing, and per-environment rate limits.

use crate::error::{Error, ErrorKind, Result};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Largest response body rekey reads; anything bigger is refused as malformed.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The settings every client of rekey shares (providers, Vault, webhooks, the Pushgateway).
/// Certificate verification is rustls's default, against the public roots built into rekey
/// (`webpki-roots`, never the system store), and there is deliberately no way to turn it off:
/// a custom CA ([`client_with_ca`]) is the only knob.
///
/// Redirects are never followed, to any origin: a redirect could carry a token, a login body
/// or a secret URL path to another host (SECURITY.md, *Transport*). A `3xx` answer comes back
/// to the caller, which refuses it with [`redirect_error`]. No `Referer` is ever sent: it
/// would repeat the full URL of the request (a Slack webhook's path is its secret).
pub fn builder() -> reqwest::ClientBuilder {
    builder_trusting(Vec::new()).expect("the public roots alone always make a valid TLS setup")
}

/// [`builder`] trusting, beside the public roots, the CA certificates given.
fn builder_trusting(
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> std::result::Result<reqwest::ClientBuilder, rustls::Error> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .tls_backend_preconfigured(tls_config(extra_roots)?))
}

/// rekey's TLS setup, made here rather than left to reqwest so that it is the same in every
/// build: rustls on ring (the crypto the AWS SDK's client also uses, so one crypto library is
/// built), TLS 1.2 and 1.3, the public roots of `webpki-roots` plus the CA certificates given,
/// and ALPN offering HTTP/2 then HTTP/1.1 (reqwest sets ALPN only on a setup it makes itself).
fn tls_config(
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> std::result::Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        roots.add(cert)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// The error for a `3xx` answer, which no client of rekey follows. It names where the server
/// pointed (origin only, see [`redact_url`]) and what to do instead.
pub fn redirect_error(resp: &reqwest::Response, what: &str, fix: &str) -> Error {
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| {
            // A relative Location is resolved against the request's URL.
            resp.url()
                .join(l)
                .map(|u| redact_url(u.as_str(), UrlPart::Origin))
                .unwrap_or_else(|_| "an unreadable location".into())
        })
        .unwrap_or_else(|| "no location".into());
    Error::config(format!(
        "{what}: answered HTTP {} (a redirect to {to}); rekey never follows redirects: {fix}",
        resp.status().as_u16()
    ))
    .not_applied()
}

/// How much of a URL may be shown by [`redact_url`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlPart {
    /// Scheme, host, port and path (a Pushgateway's or a provider's path is not secret).
    Path,
    /// Scheme, host and port only (a webhook's path may be its secret, as Slack's is).
    Origin,
}

/// The one place a URL is made fit to print in a message, a log line or `--help`: user name
/// and password become `***`, query and fragment are dropped, and with [`UrlPart::Origin`]
/// the path too. A string that does not parse as a URL is cut the same way by hand, so an
/// invalid URL's password is not echoed either.
pub fn redact_url(url: &str, part: UrlPart) -> String {
    let url = url.trim();
    if let Ok(mut u) = reqwest::Url::parse(url)
        && u.has_host()
    {
        let had_userinfo = !u.username().is_empty() || u.password().is_some();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        let mut shown = format!("{}://", u.scheme());
        if had_userinfo {
            shown.push_str("***@");
        }
        shown.push_str(u.host_str().unwrap_or(""));
        if let Some(port) = u.port() {
            shown.push_str(&format!(":{port}"));
        }
        match part {
            UrlPart::Path => shown.push_str(u.path()),
            UrlPart::Origin if u.path() != "/" && !u.path().is_empty() => shown.push_str("/***"),
            UrlPart::Origin => {}
        }
        return shown;
    }
    // Unparseable: keep `scheme://host[:port]` at most, never what stands before an `@`.
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let tail = match part {
        UrlPart::Path => tail.split(['?', '#']).next().unwrap_or(""),
        UrlPart::Origin if tail.is_empty() => "",
        UrlPart::Origin => "/***",
    };
    format!("{scheme}{host}{tail}")
}

/// The process-wide HTTP client. Per-request timeouts are set by each caller.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            builder()
                .build()
                .expect("the HTTP client configuration is static and valid")
        })
        .clone()
}

/// The process-wide client, or, with `ca_cert`, one that also trusts the CA certificates in
/// that PEM file (one client per file, shared, so connections are still reused).
pub fn client_with_ca(ca_cert: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let Some(path) = ca_cert else {
        return Ok(client());
    };
    static CLIENTS: OnceLock<Mutex<HashMap<std::path::PathBuf, reqwest::Client>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .expect("client map poisoned");
    if let Some(c) = clients.get(path) {
        return Ok(c.clone());
    }
    let pem = std::fs::read(path).map_err(|e| {
        Error::config(format!("cannot read ca_cert {}", path.display())).with_source(e)
    })?;
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .ok()
        .filter(|c: &Vec<_>| !c.is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "ca_cert {} holds no PEM certificate",
                path.display()
            ))
        })?;
    let unusable = |e: &dyn std::fmt::Display| {
        Error::config(format!("ca_cert {} cannot be used: {e}", path.display()))
    };
    let client = builder_trusting(certs)
        .map_err(|e| unusable(&e))?
        .build()
        .map_err(|e| unusable(&e))?;
    clients.insert(path.to_path_buf(), client.clone());
    Ok(client)
}

/// The one rule for every URL rekey sends a credential or a token to (providers, Vault, AWS
/// endpoints, webhooks, the Pushgateway): it parses; it carries no `user:password@`; it is
/// `https://`, or `http://` to a loopback host only (the emulator, tests); it has a host. The
/// message shows the URL without credentials, query or fragment. Callers add their own rules
/// (no path, no query) on the URL returned.
pub fn endpoint(raw: &str) -> std::result::Result<reqwest::Url, String> {
    let shown = redact_url(raw, UrlPart::Path);
    let url =
        reqwest::Url::parse(raw.trim()).map_err(|e| format!("\"{shown}\" is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials (user:password@)".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url.host_str().unwrap_or("")) => {}
        "http" => {
            return Err(format!(
                "plain http is allowed only to loopback hosts (127.0.0.1, ::1, localhost); use https:// for \"{shown}\": credentials would cross the network unencrypted"
            ));
        }
        other => {
            return Err(format!(
                "unsupported scheme \"{other}\" in \"{shown}\"; use https://"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{shown}\" has no host"));
    }
    Ok(url)
}

/// [`endpoint`] as a configuration error.
pub fn check_url(url: &str) -> Result<()> {
    endpoint(url).map(drop).map_err(Error::config)
}

/// `localhost`, or an IPv4/IPv6 loopback address (brackets allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Maps a transport failure to an error kind. The URL stays in the message (it holds no
/// secret); bodies never do.
pub fn classify_transport(err: reqwest::Error, what: &str) -> Error {
    let err = err.without_url();
    if err.is_timeout() {
        Error::new(ErrorKind::Timeout, format!("{what}: no answer in time")).with_source(err)
    } else if is_certificate_error(&err) {
        // Not temporary: retrying cannot make an untrusted certificate trusted (and it may be
        // an interception). Fails at once, as a configuration problem, before any change.
        Error::new(
            ErrorKind::Config,
            format!("{what}: cannot connect: its TLS certificate is not trusted (for a private CA, set ca_cert)"),
        )
        .with_source(err)
        .not_applied()
    } else if err.is_connect() {
        // The request never left: safe to resend even a mutation.
        Error::new(ErrorKind::Unavailable, format!("{what}: cannot connect"))
            .with_source(err)
            .not_applied()
    } else {
        Error::new(ErrorKind::Unavailable, format!("{what}: connection failed")).with_source(err)
    }
}

/// Whether a connection failed on the server's certificate (the cause chain names it).
pub fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if text.contains("certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Parses `Retry-After`: delta-seconds or an HTTP date. Capped at 10 minutes.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(Duration::from_secs(600)))
}

pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Reads a body, refusing more than [`MAX_BODY`] bytes. The buffer is zeroized when dropped:
/// a create or token answer *is* a secret. (Sized up front from `Content-Length` so that growing
/// it rarely leaves unzeroized copies behind; hyper's own buffers are out of reach.)
pub async fn read_body(
    mut resp: reqwest::Response,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let hint = resp.content_length().unwrap_or(0).min(MAX_BODY as u64) as usize;
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(hint));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Error::malformed(format!(
                        "{what}: response larger than {MAX_BODY} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify_transport(e, what)),
        }
    }
}

/// An OAuth client-credentials token request (`grant_type=client_credentials`, form body, HTTP
/// Basic), as both platforms take it. Returns the status, any `Retry-After`, and the bounded
/// body; what the answer means is the caller's to classify.
pub async fn client_credentials(
    http: &reqwest::Client,
    url: &str,
    pair: &crate::secret::ClientPair,
    timeout: Duration,
    what: &str,
) -> Result<(
    reqwest::StatusCode,
    Option<Duration>,
    zeroize::Zeroizing<Vec<u8>>,
)> {
    let resp = http
        .post(url)
        .basic_auth(&pair.client_id, Some(pair.secret.expose()))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[("grant_type", "client_credentials")])
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| classify_transport(e, what))?;
    let status = resp.status();
    let wait = retry_after(&resp);
    let body = read_body(resp, what).await?;
    Ok((status, wait, body))
}

/// Requests-per-second limiters shared by every provider instance talking to one API base, so
/// two inventory entries for the same environment do not double the rate.
pub fn limiter_for(base_url: &str, per_second: f64) -> Arc<DefaultDirectRateLimiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
        OnceLock::new();
    let map = LIMITERS.get_or_init(Default::default);
    let mut map = map.lock().expect("limiter map poisoned");
    map.entry(base_url.to_string())
        .or_insert_with(|| {
            let period = Duration::from_secs_f64(1.0 / per_second.max(0.001));
            // A small burst keeps throughput at the limit without bursting past a server's bucket.
            let burst = NonZeroU32::new((per_second / 10.0).clamp(1.0, 20.0) as u32)
                .unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(period)
                .expect("period is positive")
                .allow_burst(burst);
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_use_plain_http() {
        assert!(check_url("https://api.ctpx.secureworks.com").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://localhost:1").is_ok());
        assert!(check_url("http://[::1]:1").is_ok());
        let err = check_url("http://api.example.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(check_url("http://10.0.0.1").is_err());
        assert!(check_url("ftp://127.0.0.1").is_err());
    }

    #[test]
    fn urls_are_shown_without_credentials_or_secret_paths() {
        use UrlPart::{Origin, Path};
        let cases = [
            (
                "https://user:pa55@push.example:9091/x?token=t",
                Path,
                "https://***@push.example:9091/x",
            ),
            ("http://127.0.0.1:9091", Path, "http://127.0.0.1:9091/"),
            (
                "https://hooks.slack.com/services/T0/B0/s3cr3t",
                Origin,
                "https://hooks.slack.com/***",
            ),
            (
                "https://u:pa55@hooks.example",
                Origin,
                "https://***@hooks.example",
            ),
            // Unparseable (bad port), credentials and all.
            (
                "https://user:pa55@host:99999/p?q=1",
                Path,
                "https://***@host:99999/p",
            ),
            (
                "https://user:pa55@host:bad/s3cr3t",
                Origin,
                "https://***@host:bad/***",
            ),
            ("user:pa55@host", Path, "***@host"),
        ];
        for (url, part, want) in cases {
            let shown = redact_url(url, part);
            assert_eq!(shown, want, "{url}");
            assert!(
                !shown.contains("pa55") && !shown.contains("s3cr3t"),
                "{shown}"
            );
        }
        let err = check_url("https://user:pa55@host:99999").unwrap_err();
        assert!(!err.to_string().contains("pa55"), "{err}");
    }

    #[test]
    fn a_ca_cert_that_is_not_pem_is_a_clear_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = client_with_ca(Some(&path)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        let missing = client_with_ca(Some(&dir.path().join("nope.pem"))).unwrap_err();
        assert!(
            missing.to_string().contains("cannot read ca_cert"),
            "{missing}"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let future = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(600)));
    }
}
