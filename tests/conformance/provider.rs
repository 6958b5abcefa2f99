//! The provider conformance suite: every [`Provider`] must pass every case here against the
//! emulator, through the trait, built by `ProviderConfig::open` from an inventory (as a run
//! builds it). A provider's test file (tests/conformance_<platform>.rs) implements [`Harness`]
//! and calls [`run_all`]. Cases share one tenant; each works under its own random name prefix,
//! so none sees another's clients.

use async_trait::async_trait;
use rekey::error::ErrorKind;
use rekey::provider::{ClientSpec, IssuedClient, Provider};
use rekey::secret::{ClientPair, Secret};
use std::collections::BTreeSet;
use std::sync::Arc;

#[async_trait]
pub trait Harness: Send + Sync {
    /// The provider under test, built from the harness's inventory.
    fn provider(&self) -> Arc<dyn Provider>;
    /// What `Provider::kind` must say.
    fn kind(&self) -> &'static str;
    /// The tenant (Taegis) or org (Cisco) the provider acts in.
    fn tenant(&self) -> String;
    /// A client the bootstrap may create: `name` with roles (Taegis) or scopes (Cisco) it may
    /// grant.
    fn spec(&self, name: &str) -> ClientSpec;
    /// A token exchange straight against the platform's own API, not through rekey: the
    /// suite's independent witness that a pair works.
    async fn token_ok(&self, pair: &ClientPair) -> bool;
    /// Clients per page of the platform's listing (the paging case lists more than one page).
    fn page_size(&self) -> usize {
        100
    }
    /// Called with every secret the suite is issued or chooses, so the harness can check that
    /// no output (the trace log) ever holds one.
    fn seen(&self, _secret: &Secret) {}
}

type Case = fn(&dyn Harness) -> futures_box::BoxFut<'_>;

/// Every case, by name. `run_all` runs them all and returns how many ran (all, or it panics).
pub async fn run_all(h: &dyn Harness) -> usize {
    let cases: Vec<(&str, Case)> = vec![
        ("kind and capabilities", |h| Box::pin(kind(h))),
        ("a created client's secret gets a token", |h| {
            Box::pin(create_gets_a_token(h))
        }),
        (
            "find_clients lists every page of a prefix, nothing outside it",
            |h| Box::pin(find_by_prefix_across_pages(h)),
        ),
        (
            "rotate_secret kills the old secret, or is refused clearly",
            |h| Box::pin(rotate_in_place(h)),
        ),
        (
            "a caller-chosen secret is used when the capability says so",
            |h| Box::pin(caller_chosen_secret(h)),
        ),
        ("delete_client, then NotFound", |h| {
            Box::pin(delete_then_not_found(h))
        }),
        ("verify says Unauthorized for a wrong secret", |h| {
            Box::pin(verify_wrong_secret(h))
        }),
    ];
    let mut ran = 0;
    for (name, case) in cases {
        eprintln!("provider conformance ({}): {name}", h.kind());
        case(h).await;
        ran += 1;
    }
    ran
}

/// How many cases [`run_all`] runs.
pub const CASES: usize = 7;

pub mod futures_box {
    pub type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// A fresh name prefix for one case: `rekey-<random>-`.
fn prefix() -> String {
    use rand::Rng;
    format!("rekey-c{:08x}-", rand::rng().random::<u32>())
}

fn pair(c: &IssuedClient) -> ClientPair {
    ClientPair {
        client_id: c.client_id.clone(),
        secret: c.secret.clone(),
    }
}

fn with_secret(c: &IssuedClient, secret: &Secret) -> ClientPair {
    ClientPair {
        client_id: c.client_id.clone(),
        secret: secret.clone(),
    }
}

async fn create(h: &dyn Harness, name: &str) -> IssuedClient {
    let c = h
        .provider()
        .create_client(&h.tenant(), &h.spec(name))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    h.seen(&c.secret);
    c
}

async fn rotate(h: &dyn Harness, client: &str, chosen: Option<&Secret>) -> IssuedClient {
    if let Some(s) = chosen {
        h.seen(s);
    }
    let c = h
        .provider()
        .rotate_secret(&h.tenant(), client, chosen)
        .await
        .unwrap_or_else(|e| panic!("rotate {client}: {e}"));
    h.seen(&c.secret);
    c
}

/// Asserts `pair` works, both through the provider and at the platform itself.
async fn assert_works(h: &dyn Harness, pair: &ClientPair, what: &str) {
    h.provider()
        .verify(&h.tenant(), pair)
        .await
        .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert!(h.token_ok(pair).await, "{what}: the platform refuses it");
}

/// Asserts `pair` is dead: `Unauthorized` through the provider, refused by the platform.
async fn assert_dead(h: &dyn Harness, pair: &ClientPair, what: &str) {
    let e = h
        .provider()
        .verify(&h.tenant(), pair)
        .await
        .expect_err(what);
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{what}: {e}");
    assert!(
        !h.token_ok(pair).await,
        "{what}: the platform still accepts it"
    );
}

async fn kind(h: &dyn Harness) {
    let p = h.provider();
    assert_eq!(p.kind(), h.kind());
    let caps = p.capabilities();
    assert!(
        caps.in_place_rotation || !caps.caller_chosen_secret,
        "a caller-chosen secret is a kind of in-place rotation: {caps:?}"
    );
}

async fn create_gets_a_token(h: &dyn Harness) {
    let name = format!("{}a-g1", prefix());
    let a = create(h, &name).await;
    assert_eq!(a.name, name, "the client carries the managed name");
    assert!(!a.client_id.is_empty() && !a.object_id.is_empty());
    assert!(!a.secret.expose().is_empty());
    assert_works(h, &pair(&a), "a new client's pair").await;
    let found = h.provider().find_clients(&h.tenant(), &name).await.unwrap();
    assert_eq!(found.len(), 1, "the new client is listed once");
    assert_eq!(found[0].client_id, a.client_id);
    assert_eq!(found[0].object_id, a.object_id);
    assert_eq!(found[0].name, name);
}

async fn find_by_prefix_across_pages(h: &dyn Harness) {
    let p = h.provider();
    let tenant = h.tenant();
    let base = prefix();
    let wanted = format!("{base}many-");
    let n = h.page_size() + 4;
    let mut ids = BTreeSet::new();
    for i in 0..n {
        ids.insert(create(h, &format!("{wanted}g{i}")).await.client_id);
    }
    // Neighbours: a sibling prefix, a name that has the prefix later in it, a shorter name.
    let outside = [
        format!("{base}mane-g1"),
        format!("x{wanted}g1"),
        format!("{base}many"),
    ];
    for name in &outside {
        create(h, name).await;
    }
    let found = p.find_clients(&tenant, &wanted).await.unwrap();
    for c in &found {
        assert!(
            c.name.starts_with(&wanted),
            "{} is outside the prefix {wanted}",
            c.name
        );
    }
    let got: BTreeSet<String> = found.iter().map(|c| c.client_id.clone()).collect();
    assert_eq!(got.len(), found.len(), "no client listed twice");
    assert_eq!(got, ids, "every client of the prefix, over every page");
    assert_eq!(
        p.find_clients(&tenant, &base).await.unwrap().len(),
        n + 2,
        "the wider prefix holds the siblings too (not the one that only contains it)"
    );
    assert!(
        p.find_clients(&tenant, &format!("{base}none-"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn rotate_in_place(h: &dyn Harness) {
    let p = h.provider();
    let tenant = h.tenant();
    let a = create(h, &format!("{}r-g1", prefix())).await;
    if !p.capabilities().in_place_rotation {
        let e = p
            .rotate_secret(&tenant, &a.client_id, None)
            .await
            .expect_err("no in-place rotation: refused");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert!(!e.is_temporary(), "a refusal is not worth retrying: {e}");
        assert!(e.to_string().contains("alternate"), "says what to use: {e}");
        assert_works(h, &pair(&a), "the refusal changed nothing").await;
        return;
    }
    // By object id, then by client id: each time the old secret dies at once.
    let r1 = rotate(h, &a.object_id, None).await;
    assert_eq!(r1.client_id, a.client_id, "same client, new secret");
    assert_ne!(r1.secret, a.secret);
    assert_dead(h, &pair(&a), "the secret before rotation").await;
    assert_works(h, &pair(&r1), "the rotated secret").await;
    let r2 = rotate(h, &a.client_id, None).await;
    assert_eq!(r2.client_id, a.client_id);
    assert_dead(h, &pair(&r1), "the secret before the second rotation").await;
    assert_works(h, &pair(&r2), "the second rotated secret").await;
}

async fn caller_chosen_secret(h: &dyn Harness) {
    let p = h.provider();
    let caps = p.capabilities();
    if !caps.caller_chosen_secret {
        return; // rekey never passes a secret to this provider (the engine asks first)
    }
    let a = create(h, &format!("{}s-g1", prefix())).await;
    let chosen = Secret::generate(64);
    let r = rotate(h, &a.client_id, Some(&chosen)).await;
    assert_eq!(r.secret, chosen, "the platform uses the chosen secret");
    assert_dead(h, &pair(&a), "the secret before rotation").await;
    assert_works(h, &with_secret(&a, &chosen), "the chosen secret").await;
}

async fn delete_then_not_found(h: &dyn Harness) {
    let p = h.provider();
    let tenant = h.tenant();
    let base = prefix();
    let a = create(h, &format!("{base}d-g1")).await;
    let keep = create(h, &format!("{base}k-g1")).await;
    p.delete_client(&tenant, &a.object_id).await.unwrap();
    assert_dead(h, &pair(&a), "a deleted client's pair").await;
    let e = p
        .delete_client(&tenant, &a.object_id)
        .await
        .expect_err("deleted twice");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        p.find_clients(&tenant, &format!("{base}d-"))
            .await
            .unwrap()
            .is_empty(),
        "a deleted client is not listed"
    );
    assert_works(h, &pair(&keep), "a neighbour of the deleted client").await;
    // By client id works too.
    p.delete_client(&tenant, &keep.client_id).await.unwrap();
    assert_dead(h, &pair(&keep), "a client deleted by client id").await;
}

async fn verify_wrong_secret(h: &dyn Harness) {
    let a = create(h, &format!("{}v-g1", prefix())).await;
    let wrong = Secret::generate(a.secret.expose().len().max(16));
    h.seen(&wrong);
    assert_dead(h, &with_secret(&a, &wrong), "a wrong secret").await;
    let unknown = ClientPair {
        client_id: format!("{}-nobody", a.client_id),
        secret: a.secret.clone(),
    };
    assert_dead(h, &unknown, "an unknown client id").await;
    assert_works(h, &pair(&a), "the right secret, after the wrong ones").await;
}
