//! The Cisco provider against the emulator's IROH endpoints: every call, and every way the
//! platform can fail (401 on a stale token, 429 with Retry-After, the org's hourly budget, 5xx
//! on a create, a wrong delete path, a token naming another client). All of it logged at trace
//! level into a buffer that must never contain a secret.

mod common;
use common::logs::{assert_logs_clean, log_buffer};
use common::providers::{once, stat, with_fast_retries};
use common::{CiscoWorld, World};
use rekey::config::CiscoSettings;
use rekey::emulator::{FaultAction, Faults};
use rekey::error::ErrorKind;
use rekey::provider::cisco::{CISCO_REGIONS, CLIENT_ID_CLAIM, CiscoProvider};
use rekey::provider::{Bootstrap, ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn provider_with(w: &CiscoWorld, settings: CiscoSettings) -> Arc<dyn Provider> {
    log_buffer();
    let o = &w.orgs[0];
    let boot = Bootstrap::new(ClientPair {
        client_id: o.admin_id.clone(),
        secret: Secret::new(o.admin_password.clone()),
    });
    let inner =
        CiscoProvider::new("test", &settings, boot, 1000.0, Duration::from_secs(5)).unwrap();
    with_fast_retries(Arc::new(inner))
}

fn provider(w: &CiscoWorld) -> Arc<dyn Provider> {
    provider_with(w, CiscoSettings::with_url(w.emu.url()))
}

fn spec(name: &str) -> ClientSpec {
    ClientSpec {
        name: name.into(),
        roles: vec!["enrich:read".into()],
    }
}

fn pair(id: &str, s: &Secret) -> ClientPair {
    ClientPair {
        client_id: id.into(),
        secret: s.clone(),
    }
}

/// What only Cisco does; the rest of a client's life (create, list by prefix over pages, the
/// refusal of in-place rotation, delete, verify) is the provider conformance suite's
/// (tests/conformance_cisco.rs).
#[tokio::test(flavor = "multi_thread")]
async fn client_ids_passwords_and_scopes() {
    let w = World::new_with(0, 1).await;
    let p = provider(&w);
    assert!(!p.capabilities().in_place_rotation);

    let a = p.create_client("org", &spec("rekey-a-g1")).await.unwrap();
    assert!(a.client_id.starts_with("client-"), "{}", a.client_id);
    assert_eq!(a.secret.expose().len(), 54);
    let exact = p.find_clients("org", "rekey-a-g1").await.unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].client_id, a.client_id);
    assert!(exact[0].created_at.is_some());

    // No scope escalation: the bootstrap does not hold `admin`.
    let e = p
        .create_client(
            "org",
            &ClientSpec {
                name: "rekey-x-g1".into(),
                roles: vec!["admin".into()],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert_logs_clean(&w, &[&a.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_last_ten_minutes_are_reused_and_refetched_once_on_401() {
    let w = World::new_with(0, 1).await;
    // The emulator's token: expires_in 600 and a JWT whose exp says the same.
    let o = &w.orgs[0];
    let resp = rekey::http::client()
        .post(format!("{}/iroh/oauth2/token", w.emu.url()))
        .basic_auth(&o.admin_id, Some(&o.admin_password))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-ratelimit-org-limit"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["expires_in"], 600);
    let claims = rekey::provider::token::jwt_claims(v["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert_eq!(claims[CLIENT_ID_CLAIM], o.admin_id.as_str());

    let p = provider(&w);
    let before = stat(&w, "cisco.token").await;
    for _ in 0..3 {
        p.find_clients("org", "rekey-").await.unwrap();
    }
    assert_eq!(
        stat(&w, "cisco.token").await - before,
        1,
        "one token serves many calls"
    );

    // The server refuses the token once: one new token, the call succeeds.
    w.set_faults(once("cisco.clients", FaultAction::Status(401), 1))
        .await;
    p.find_clients("org", "rekey-").await.unwrap();
    assert_eq!(stat(&w, "cisco.token").await - before, 2);
    // Refused twice in a row: not a loop, an Unauthorized error.
    w.set_faults(once("cisco.clients", FaultAction::Status(401), 2))
        .await;
    assert_eq!(
        p.find_clients("org", "rekey-").await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_honour_retry_after_and_a_spent_budget_fails_fast() {
    let w = World::new_with(0, 1).await;
    let p = provider(&w);
    p.find_clients("org", "rekey-").await.unwrap();

    // A 429 with Retry-After: 1 is waited out, then the call succeeds.
    w.set_faults(once("cisco.clients", FaultAction::Status(429), 1))
        .await;
    let started = Instant::now();
    p.find_clients("org", "rekey-").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // The org's hourly budget is spent: 429 with a Retry-After far beyond any backoff. The
    // call fails at once as rate limited (the next run resumes), it does not sleep for the hour.
    w.set_faults(Faults {
        cisco_hourly_budget: Some(1),
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let e = p
        .create_client("org", &spec("rekey-b-g1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert!(e.retry_after().unwrap() > Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let resp = rekey::http::client()
        .get(format!("{}/iroh/oauth2-clients/clients", w.emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ratelimit-org-limit"], "1");
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn own_hourly_budget_is_ninety_percent_of_the_org_budget() {
    let w = World::new_with(0, 1).await;
    // A distinct base URL (same server) so this limiter is not shared with other tests.
    let mut s = CiscoSettings::with_url(w.emu.url().replace("127.0.0.1", "localhost"));
    s.org_hourly_budget = 20;
    let p = provider_with(&w, s);
    let started = Instant::now();
    let mut ok = 0;
    let err = loop {
        match p.find_clients("org", "rekey-").await {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 50, "the hourly budget never applied");
    };
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert!(err.to_string().contains("hourly"), "{err}");
    // 18 requests allowed: one token plus 17 list calls.
    assert_eq!(ok, 17);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_is_not_resent() {
    let w = World::new_with(0, 1).await;
    let p = provider(&w);
    p.find_clients("org", "rekey-").await.unwrap();
    w.set_faults(once("cisco.createClient", FaultAction::Status(503), 1))
        .await;
    let before = stat(&w, "cisco.createClient").await;
    let e = p
        .create_client("org", &spec("rekey-c-g1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.maybe_applied());
    assert_eq!(
        stat(&w, "cisco.createClient").await - before,
        1,
        "not resent"
    );

    // Committed, then the connection dropped: an error, and the client is there to be found.
    w.set_faults(once("cisco.createClient", FaultAction::DropAfterCommit, 1))
        .await;
    assert!(p.create_client("org", &spec("rekey-d-g1")).await.is_err());
    assert_eq!(p.find_clients("org", "rekey-d-g1").await.unwrap().len(), 1);
    // A truncated create answer is malformed, and says nothing of the password.
    w.set_faults(once("cisco.createClient", FaultAction::Truncate, 1))
        .await;
    let e = p
        .create_client("org", &spec("rekey-e-g1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_from_a_wrong_delete_path_is_not_gone() {
    let w = World::new_with(0, 1).await;
    let good = provider(&w);
    let a = good
        .create_client("org", &spec("rekey-f-g1"))
        .await
        .unwrap();
    let mut s = CiscoSettings::with_url(w.emu.url());
    s.client_path = "/iroh/oauth2-clients/wrong/{id}".into();
    let bad = provider_with(&w, s);
    let e = bad.delete_client("org", &a.client_id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("paths.client"), "{e}");
    good.verify("org", &pair(&a.client_id, &a.secret))
        .await
        .unwrap();
    assert_logs_clean(&w, &[&a.secret]);
}

/// No real server hands out a token that names another client, so this one case uses a
/// one-route stand-in for the token endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_naming_another_client_is_refused() {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!(
        "{}.{}.sig",
        e.encode(br#"{"alg":"HS256"}"#),
        e.encode(
            serde_json::json!({CLIENT_ID_CLAIM: "client-someone-else", "exp": chrono::Utc::now().timestamp() + 600})
                .to_string()
        )
    );
    let app = axum::Router::new().route(
        "/iroh/oauth2/token",
        axum::routing::post(move || {
            let jwt = jwt.clone();
            async move {
                axum::Json(serde_json::json!({"access_token": jwt, "token_type": "bearer", "expires_in": 600}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let inner = CiscoProvider::new(
        "stand-in",
        &CiscoSettings::with_url(url),
        Bootstrap::unresolved("unused"),
        100.0,
        Duration::from_secs(5),
    )
    .unwrap();
    let err = inner
        .verify("org", &pair("client-me", &Secret::new("pw")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("client-someone-else"), "{err}");
    server.abort();
}

#[test]
fn regions_and_plain_http() {
    assert_eq!(CISCO_REGIONS.len(), 3);
    let err = CiscoProvider::new(
        "x",
        &CiscoSettings::with_url("http://visibility.example.com"),
        Bootstrap::unresolved("unused"),
        10.0,
        Duration::from_secs(1),
    )
    .err()
    .expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
}
