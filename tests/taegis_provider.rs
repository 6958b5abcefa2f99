//! The Taegis provider against the emulator: every call, and every way the platform can fail
//! (429 with and without Retry-After, 5xx bursts, an expired token, GraphQL errors, malformed
//! answers, a server that never answers). All of it logged at trace level into a buffer that
//! must never contain a secret.

mod common;
use common::logs::{assert_logs_clean, log_buffer};
use common::providers::{once, stat, with_fast_retries};
use common::{ADMIN_ROLE, World};
use rekey::config::TaegisSettings;
use rekey::emulator::{FaultAction, Faults};
use rekey::error::ErrorKind;
use rekey::provider::taegis::TaegisProvider;
use rekey::provider::{Bootstrap, ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn provider(w: &World, timeout: Duration) -> Arc<dyn Provider> {
    log_buffer();
    let t = &w.tenants[0];
    let settings = TaegisSettings {
        base_url: w.emu.url(),
        environment: None,
        caller_chosen_secret: true,
    };
    let boot = Bootstrap::new(ClientPair {
        client_id: t.admin_id.clone(),
        secret: Secret::new(t.admin_secret.clone()),
    });
    let inner = TaegisProvider::new("test", &settings, boot, 1000.0, timeout).unwrap();
    with_fast_retries(Arc::new(inner))
}

fn spec(name: &str) -> ClientSpec {
    ClientSpec {
        name: name.into(),
        roles: vec![],
    }
}

/// What only Taegis does; the rest of a client's life (create, list by prefix over pages,
/// rotate, a caller-chosen secret, delete, verify) is the provider conformance suite's
/// (tests/conformance_taegis.rs).
#[tokio::test(flavor = "multi_thread")]
async fn client_ids_and_tenant_isolation() {
    let w = World::new(2).await;
    let p = provider(&w, Duration::from_secs(5));
    let tenant = w.tenants[0].id.clone();
    let a = p
        .create_client(
            &tenant,
            &ClientSpec {
                name: "rekey-a-g1".into(),
                roles: vec![ADMIN_ROLE.into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(a.client_id.len(), 32);
    // Tenant isolation: the other tenant sees none of it (our bootstrap may not act there).
    let other = w.tenants[1].id.clone();
    assert!(p.find_clients(&other, "rekey-").await.is_err());
    assert!(
        p.find_clients(&tenant, "rekey-a-")
            .await
            .unwrap()
            .iter()
            .any(|c| c.client_id == a.client_id)
    );
    assert_logs_clean(&w, &[&a.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_retried_with_and_without_retry_after() {
    let w = World::new(1).await;
    let p = provider(&w, Duration::from_secs(5));
    let tenant = w.tenants[0].id.clone();
    for (omit, date) in [(false, false), (true, false), (false, true)] {
        let before = stat(&w, "clientsSearch").await;
        let mut f = once("clientsSearch", FaultAction::Status(429), 2);
        f.omit_retry_after = omit;
        f.retry_after_http_date = date;
        w.set_faults(f).await;
        let started = Instant::now();
        p.find_clients(&tenant, "x").await.unwrap();
        assert_eq!(
            stat(&w, "clientsSearch").await - before,
            3,
            "two 429s then success"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // A whole storm from the emulator's own limiter: everything still completes.
    w.set_faults(Faults {
        rate_limit_per_sec: Some(20.0),
        ..Faults::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let p = Arc::clone(&p);
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            p.create_client(&tenant, &spec(&format!("rekey-storm-g{i}")))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        w.emu.stats().await.rate_limited > 0,
        "the storm did hit the limit"
    );
    assert_eq!(
        p.find_clients(&tenant, "rekey-storm-").await.unwrap().len(),
        30,
        "429 means not applied: no duplicates"
    );
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_only_where_safe() {
    let w = World::new(1).await;
    let p = provider(&w, Duration::from_secs(5));
    let tenant = w.tenants[0].id.clone();
    // A burst of 5xx on a read: retried until it passes.
    w.set_faults(once("clientsSearch", FaultAction::Status(503), 3))
        .await;
    p.find_clients(&tenant, "x").await.unwrap();
    // A 5xx on a create may have been applied elsewhere: not resent, reported as temporary.
    w.set_faults(once("createClient", FaultAction::Status(502), 1))
        .await;
    let before = stat(&w, "createClient").await;
    let e = p
        .create_client(&tenant, &spec("rekey-five-g1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.maybe_applied());
    assert_eq!(
        stat(&w, "createClient").await - before,
        1,
        "a maybe-applied mutation is not resent"
    );
    // A dropped answer after commit: a transport error, and the client does exist.
    w.set_faults(once("createClient", FaultAction::DropAfterCommit, 1))
        .await;
    let e = p
        .create_client(&tenant, &spec("rekey-dropped-g1"))
        .await
        .unwrap_err();
    assert!(e.is_temporary() && e.maybe_applied(), "{e:?}");
    assert_eq!(
        p.find_clients(&tenant, "rekey-dropped-g1")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_once() {
    let w = World::new(1).await;
    let p = provider(&w, Duration::from_secs(5));
    let tenant = w.tenants[0].id.clone();
    p.find_clients(&tenant, "x").await.unwrap();
    let tokens = stat(&w, "token").await;
    p.find_clients(&tenant, "x").await.unwrap();
    assert_eq!(stat(&w, "token").await, tokens, "the token is reused");
    // The gateway now refuses the token (expired or revoked): one new token, then success.
    w.set_faults(once("clientsSearch", FaultAction::Status(401), 1))
        .await;
    p.find_clients(&tenant, "x").await.unwrap();
    assert_eq!(stat(&w, "token").await, tokens + 1);
    // Refused twice in a row: a clear Unauthorized, not a loop.
    w.set_faults(once("clientsSearch", FaultAction::Status(401), 2))
        .await;
    assert_eq!(
        p.find_clients(&tenant, "x").await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_answers_become_clear_errors() {
    let w = World::new(1).await;
    let p = provider(&w, Duration::from_secs(5));
    let tenant = w.tenants[0].id.clone();
    w.set_faults(once("createClient", FaultAction::GraphqlError, 1))
        .await;
    let e = p
        .create_client(&tenant, &spec("rekey-e-g1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Invalid | ErrorKind::Forbidden | ErrorKind::NotFound
        ),
        "{e:?}"
    );
    w.set_faults(once("createClient", FaultAction::Truncate, 1))
        .await;
    assert_eq!(
        p.create_client(&tenant, &spec("rekey-t-g1"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Malformed
    );
    w.set_faults(once("clientsSearch", FaultAction::NoData, 1))
        .await;
    assert_eq!(
        p.find_clients(&tenant, "x").await.unwrap_err().kind(),
        ErrorKind::Malformed
    );
    w.set_faults(once("token", FaultAction::Truncate, 1)).await;
    let fresh = ClientPair {
        client_id: w.tenants[0].admin_id.clone(),
        secret: Secret::new(w.tenants[0].admin_secret.clone()),
    };
    assert_eq!(
        p.verify(&tenant, &fresh).await.unwrap_err().kind(),
        ErrorKind::Malformed
    );
    assert_logs_clean(&w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_times_out() {
    let w = World::new(1).await;
    let p = provider(&w, Duration::from_millis(500));
    let tenant = w.tenants[0].id.clone();
    p.find_clients(&tenant, "x").await.unwrap(); // token cached
    // A read that hangs once is retried after its timeout.
    w.set_faults(once("clientsSearch", FaultAction::Hang, 1))
        .await;
    let started = Instant::now();
    p.find_clients(&tenant, "x").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A create that hangs is a timeout error, promptly, and not resent.
    w.set_faults(once("createClient", FaultAction::Hang, 5))
        .await;
    let started = Instant::now();
    let e = p
        .create_client(&tenant, &spec("rekey-h-g1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn plain_http_is_refused_for_remote_hosts() {
    let settings = TaegisSettings {
        base_url: "http://api.example.com".into(),
        environment: None,
        caller_chosen_secret: false,
    };
    let boot = Bootstrap::unresolved("unused");
    let err = TaegisProvider::new("x", &settings, boot, 10.0, Duration::from_secs(1))
        .err()
        .expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    for env in [
        "charlie", "US1", "delta", "echo", "eu", "foxtrot", "golf", "hotel", "india", "juliet",
        "kilo", "quebec", "cac1",
    ] {
        assert!(
            rekey::config::taegis_environment_url(env).is_some(),
            "{env}"
        );
    }
}
