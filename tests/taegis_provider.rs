//! The Taegis provider against the emulator: every call, and every way the platform can fail
//! (429 with and without Retry-After, 5xx bursts, an expired token, GraphQL errors, malformed
//! answers, a server that never answers). All of it logged at trace level into a buffer that
//! must never contain a secret.

mod common;
use common::{ADMIN_ROLE, World};
use rekey::config::TaegisSettings;
use rekey::emulator::{FaultAction, Faults, OneShot};
use rekey::error::ErrorKind;
use rekey::layer::retry::{RetryLayer, RetryPolicy};
use rekey::provider::taegis::TaegisProvider;
use rekey::provider::{Bootstrap, ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Everything every test in this binary logs, at trace level, all crates.
fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: std::sync::Once = std::sync::Once::new();
    let buf = BUF.get_or_init(Default::default);
    INIT.call_once(|| {
        struct W;
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                log_buffer().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(|| W)
            .try_init()
            .expect("one subscriber per test binary");
    });
    buf
}

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
    let fast = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(3),
    };
    Arc::new(RetryLayer::new(Arc::new(inner), fast))
}

fn once(op: &str, action: FaultAction, count: u32) -> Faults {
    Faults {
        fail_next: vec![OneShot {
            skip: 0,
            operation: Some(op.into()),
            count,
            action,
        }],
        ..Faults::default()
    }
}

fn spec(name: &str) -> ClientSpec {
    ClientSpec {
        name: name.into(),
        roles: vec![],
    }
}

async fn stat(w: &World, op: &str) -> u64 {
    w.emu.stats().await.requests.get(op).copied().unwrap_or(0)
}

/// Asserts no secret of this world, nor `extra`, is in the trace log.
fn assert_logs_clean(w: &World, extra: &[&Secret]) {
    let text = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging is on"
    );
    w.assert_no_secrets(&text);
    for s in extra {
        assert!(
            !text.contains(s.expose()),
            "a secret appeared in the trace log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_lifecycle() {
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
    p.verify(
        &tenant,
        &ClientPair {
            client_id: a.client_id.clone(),
            secret: a.secret.clone(),
        },
    )
    .await
    .unwrap();

    // Rotation by object id, then by client id; each old secret dies at once.
    let r1 = p.rotate_secret(&tenant, &a.object_id, None).await.unwrap();
    assert_eq!(r1.client_id, a.client_id);
    let old = ClientPair {
        client_id: a.client_id.clone(),
        secret: a.secret.clone(),
    };
    assert_eq!(
        p.verify(&tenant, &old).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    let chosen = Secret::generate(64);
    let r2 = p
        .rotate_secret(&tenant, &a.client_id, Some(&chosen))
        .await
        .unwrap();
    assert_eq!(
        r2.secret, chosen,
        "the emulator honours a caller-chosen secret"
    );
    p.verify(
        &tenant,
        &ClientPair {
            client_id: a.client_id.clone(),
            secret: chosen.clone(),
        },
    )
    .await
    .unwrap();

    // Search by prefix pages through more than one page (100 per page).
    for i in 0..105 {
        p.create_client(&tenant, &spec(&format!("rekey-many-g{i}")))
            .await
            .unwrap();
    }
    let many = p.find_clients(&tenant, "rekey-many-").await.unwrap();
    assert_eq!(many.len(), 105);
    let exact = p.find_clients(&tenant, "rekey-a-g1").await.unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].object_id, a.object_id);

    // Tenant isolation: the other tenant sees none of it (our bootstrap may not act there).
    let other = w.tenants[1].id.clone();
    assert!(p.find_clients(&other, "rekey-").await.is_err());

    p.delete_client(&tenant, &a.object_id).await.unwrap();
    let gone = ClientPair {
        client_id: a.client_id.clone(),
        secret: chosen.clone(),
    };
    assert_eq!(
        p.verify(&tenant, &gone).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        p.delete_client(&tenant, &a.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(
        p.find_clients(&tenant, "rekey-a-")
            .await
            .unwrap()
            .is_empty()
    );
    assert_logs_clean(&w, &[&a.secret, &r1.secret, &chosen]);
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
