//! The emulator over plain HTTP: token endpoint, GraphQL semantics (auth, tenants, roles,
//! revocation), every fault kind as a client sees it, persistence, stats.
//!
//! Each test starts its own emulator on 127.0.0.1:0 with generated tenants and secrets.

#![cfg(feature = "emulator")]

use base64::Engine;
use rand::Rng;
use rekey::emulator::{
    self, ClientSummary, EmulatorConfig, EmulatorHandle, FaultAction, Faults, OneShot, Seed,
    SeedClient, SeedTenant, Stats, TENANT_ADMIN_ROLE,
};
use rekey::secret::Secret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TOKEN: &str = "/auth/api/v2/auth/token";

/// One emulator with tenant A (admin), its child A1, and tenant B (admin).
struct Fixture {
    emu: EmulatorHandle,
    http: reqwest::Client,
    a: String,
    a1: String,
    b: String,
    a_admin: (String, Secret),
    b_admin: (String, Secret),
}

fn suffix() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(10)
        .map(char::from)
        .collect()
}

fn seed_admin(id: &str, secret: &Secret) -> SeedClient {
    SeedClient {
        client_id: id.into(),
        secret: secret.expose().into(),
        name: format!("admin-{id}"),
        roles: vec![TENANT_ADMIN_ROLE.into()],
    }
}

fn seed(
    a: &str,
    a1: &str,
    b: &str,
    a_admin: &(String, Secret),
    b_admin: &(String, Secret),
) -> Seed {
    Seed {
        tenants: vec![
            SeedTenant {
                id: a.into(),
                parent: None,
                clients: vec![seed_admin(&a_admin.0, &a_admin.1)],
            },
            SeedTenant {
                id: a1.into(),
                parent: Some(a.into()),
                clients: vec![],
            },
            SeedTenant {
                id: b.into(),
                parent: None,
                clients: vec![seed_admin(&b_admin.0, &b_admin.1)],
            },
        ],
        ..Seed::default()
    }
}

fn http() -> reqwest::Client {
    rekey::http::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

impl Fixture {
    async fn new() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    async fn with_config(mut config: EmulatorConfig) -> Self {
        let n: u32 = rand::rng().random_range(10_000..99_999);
        let (a, a1, b) = (n.to_string(), format!("{n}1"), (n + 1).to_string());
        let a_admin = (format!("adminA{}", suffix()), Secret::generate(48));
        let b_admin = (format!("adminB{}", suffix()), Secret::generate(48));
        config.seed = seed(&a, &a1, &b, &a_admin, &b_admin);
        let emu = emulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Fixture {
            emu,
            http: http(),
            a,
            a1,
            b,
            a_admin,
            b_admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.url())
    }

    async fn token_response(&self, id: &str, secret: &str) -> reqwest::Response {
        self.http
            .post(self.url(TOKEN))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, id: &str, secret: &str) -> String {
        let r = self.token_response(id, secret).await;
        assert_eq!(r.status(), 200, "token for {id}");
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn admin_token(&self, b: bool) -> String {
        let (id, s) = if b { &self.b_admin } else { &self.a_admin };
        self.token(id, s.expose()).await
    }

    async fn gql_raw(
        &self,
        token: Option<&str>,
        tenant: Option<&str>,
        query: &str,
        variables: Value,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = tenant {
            req = req.header("X-Tenant-Context", t);
        }
        req.send().await.unwrap()
    }

    async fn gql(&self, token: &str, tenant: Option<&str>, query: &str, variables: Value) -> Value {
        let r = self.gql_raw(Some(token), tenant, query, variables).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// createClient; returns (object id, client id, secret).
    async fn create(
        &self,
        token: &str,
        tenant: Option<&str>,
        name: &str,
        roles: Option<Vec<&str>>,
    ) -> (String, String, Secret) {
        let v = self
            .gql(token, tenant, CREATE, json!({"name": name, "roles": roles}))
            .await;
        assert!(v.get("errors").is_none(), "createClient failed: {v}");
        let nc = &v["data"]["createClient"];
        (
            nc["client"]["id"].as_str().unwrap().into(),
            nc["client"]["clientID"].as_str().unwrap().into(),
            Secret::new(nc["clientSecret"].as_str().unwrap()),
        )
    }

    async fn listed(&self, tenant: &str) -> Vec<ClientSummary> {
        let r = self
            .http
            .get(self.url(&format!("/_emulator/tenants/{tenant}/clients")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn put_faults(&self, f: &Faults) {
        let r = self
            .http
            .put(self.url("/_emulator/faults"))
            .json(f)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn stats(&self) -> Stats {
        self.http
            .get(self.url("/_emulator/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

const CREATE: &str = "mutation createClient($name: String!, $roles: [ID!]) {
  createClient(name: $name, roles: $roles) { clientSecret client { id clientID name tenantID roleAssignments { roleID roleName } } } }";
const ROTATE: &str = "mutation rotateClientSecret($id: ID!, $secret: String) {
  rotateClientSecret(id: $id, secret: $secret) { clientSecret client { id clientID } } }";
const DELETE: &str = "mutation deleteClient($id: ID!) { deleteClient(id: $id) { id clientID } }";
const GET: &str = "query client($id: ID!) { client(id: $id) { id clientID tenantID } }";
const SEARCH: &str = "query clientsSearch($filters: ClientsSearchInput) {
  clientsSearch(filters: $filters) { totalCount totalUnfilteredCount results { name clientID } } }";

fn first_error(v: &Value) -> String {
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn token_endpoint_issues_jwts_for_good_credentials_only() {
    let f = Fixture::new().await;
    let (id, secret) = (&f.a_admin.0, f.a_admin.1.expose());

    let r = f.token_response(id, secret).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    let expiry = v["expiry"].as_str().unwrap();
    assert!(
        expiry.ends_with('Z') && expiry.len() == "2026-01-01T00:00:00.000Z".len(),
        "{expiry}"
    );
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["tenant"], f.a.as_str());
    let now = chrono::Utc::now().timestamp();
    assert!(c["exp"].as_i64().unwrap() > now + 3500);
    assert!(c["iat"].as_i64().unwrap() <= now + 1);
    assert!(c["jti"].is_string() && c["client_object_id"].is_string());

    // The JSON body form the real service also accepts.
    let r = f
        .http
        .post(f.url(TOKEN))
        .basic_auth(id, Some(secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for (who, pw) in [(id.as_str(), "wrong-secret"), ("no-such-client", secret)] {
        let r = f.token_response(who, pw).await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_client");
        assert!(!v.to_string().contains(secret));
    }
    let r = f
        .http
        .post(f.url(TOKEN))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Token requests are counted on the client.
    let me = f
        .listed(&f.a)
        .await
        .into_iter()
        .find(|c| c.client_id == *id)
        .unwrap();
    assert_eq!(me.token_request_count, 2);
}

#[tokio::test]
async fn graphql_requires_a_valid_bearer_token() {
    let f = Fixture::new().await;
    let q = "{ __schema { queryType { name } } }";
    for token in [None, Some("garbage"), Some("a.b.c")] {
        let r = f.gql_raw(token, None, q, json!({})).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "Unauthorized"})
        );
    }
    // A well-formed token signed by another emulator is refused too.
    let other = Fixture::new().await;
    let foreign = other.admin_token(false).await;
    assert_eq!(
        f.gql_raw(Some(&foreign), None, q, json!({})).await.status(),
        401
    );

    let t = f.admin_token(false).await;
    let v = f.gql(&t, None, q, json!({})).await;
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "QueryRoot");
}

#[tokio::test]
async fn clients_are_isolated_per_tenant() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let tb = f.admin_token(true).await;
    let name = format!("iso-{}", suffix());
    let (obj, cid, _) = f.create(&ta, None, &name, None).await;

    // B sees nothing of A's, by id, client id, or name; and may not act in A.
    let v = f
        .gql(&tb, None, SEARCH, json!({"filters": {"clientIDs": [cid]}}))
        .await;
    assert_eq!(v["data"]["clientsSearch"]["totalCount"], 0);
    let v = f
        .gql(&tb, None, SEARCH, json!({"filters": {"name": name}}))
        .await;
    assert_eq!(v["data"]["clientsSearch"]["totalCount"], 0);
    for id in [&obj, &cid] {
        let v = f.gql(&tb, None, GET, json!({"id": id})).await;
        assert_eq!(v["data"]["client"], Value::Null);
        assert!(first_error(&v).contains("not found"), "{v}");
        let v = f.gql(&tb, None, ROTATE, json!({"id": id})).await;
        assert_eq!(v["data"]["rotateClientSecret"], Value::Null);
        let v = f.gql(&tb, None, DELETE, json!({"id": id})).await;
        assert_eq!(v["data"]["deleteClient"], Value::Null);
    }
    let v = f.gql(&tb, Some(&f.a), SEARCH, json!({})).await;
    assert_eq!(v["data"]["clientsSearch"], Value::Null);
    assert!(first_error(&v).contains("not authorized"), "{v}");
    // An unknown tenant gets the same answer as someone else's.
    let v = f.gql(&ta, Some("999999999"), SEARCH, json!({})).await;
    assert!(first_error(&v).contains("not authorized"), "{v}");

    // A acts in its child tenant through the header; the child's clients stay there.
    let (_, child_cid, child_secret) = f
        .create(
            &ta,
            Some(&f.a1),
            &format!("child-{}", suffix()),
            Some(vec![TENANT_ADMIN_ROLE]),
        )
        .await;
    assert!(
        f.listed(&f.a1)
            .await
            .iter()
            .any(|c| c.client_id == child_cid)
    );
    assert!(
        !f.listed(&f.a)
            .await
            .iter()
            .any(|c| c.client_id == child_cid)
    );
    // ...but the child's admin may not act in its parent.
    let tc = f.token(&child_cid, child_secret.expose()).await;
    let v = f.gql(&tc, Some(&f.a), SEARCH, json!({})).await;
    assert!(first_error(&v).contains("not authorized"), "{v}");

    // Nothing of B was touched.
    assert_eq!(f.listed(&f.b).await.len(), 1);
}

#[tokio::test]
async fn only_tenant_admins_manage_clients_and_tenant_5000_is_refused() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let (_, cid, secret) = f
        .create(&ta, None, &format!("analyst-{}", suffix()), None)
        .await;
    let tan = f.token(&cid, secret.expose()).await;
    let v = f.gql(&tan, None, SEARCH, json!({})).await;
    assert_eq!(v["data"]["clientsSearch"], Value::Null);
    assert!(first_error(&v).contains("not authorized"), "{v}");
    let v = f.gql(&tan, None, CREATE, json!({"name": "x"})).await;
    assert!(first_error(&v).contains("not authorized"), "{v}");

    let v = f
        .gql(
            &ta,
            None,
            CREATE,
            json!({"name": "x", "roles": ["not-a-role"]}),
        )
        .await;
    assert!(first_error(&v).contains("unknown role"), "{v}");

    let admin5000 = ("scwx-admin".to_string(), Secret::generate(40));
    let r = f
        .http
        .post(f.url("/_emulator/tenants"))
        .json(&SeedTenant {
            id: "5000".into(),
            parent: None,
            clients: vec![seed_admin(&admin5000.0, &admin5000.1)],
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t5 = f.token(&admin5000.0, admin5000.1.expose()).await;
    let v = f.gql(&t5, None, CREATE, json!({"name": "x"})).await;
    assert!(first_error(&v).contains("5000"), "{v}");
}

#[tokio::test]
async fn rotation_and_deletion_revoke_secrets_and_tokens_at_once() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let (obj, cid, s1) = f
        .create(
            &ta,
            None,
            &format!("rot-{}", suffix()),
            Some(vec![TENANT_ADMIN_ROLE]),
        )
        .await;
    let t1 = f.token(&cid, s1.expose()).await;
    assert!(f.gql(&t1, None, SEARCH, json!({})).await["errors"].is_null());

    let v = f.gql(&ta, None, ROTATE, json!({"id": obj})).await;
    let s2 = Secret::new(
        v["data"]["rotateClientSecret"]["clientSecret"]
            .as_str()
            .unwrap(),
    );
    assert_ne!(s1, s2);
    assert_eq!(f.token_response(&cid, s1.expose()).await.status(), 401);
    assert_eq!(
        f.gql_raw(Some(&t1), None, SEARCH, json!({})).await.status(),
        401,
        "a token minted before the rotation must be rejected"
    );
    let t2 = f.token(&cid, s2.expose()).await;

    // A caller-chosen secret is honoured (and validated).
    let chosen = Secret::generate(40);
    let v = f
        .gql(
            &ta,
            None,
            ROTATE,
            json!({"id": cid, "secret": chosen.expose()}),
        )
        .await;
    assert_eq!(
        v["data"]["rotateClientSecret"]["clientSecret"].as_str(),
        Some(chosen.expose())
    );
    assert_eq!(
        f.gql_raw(Some(&t2), None, SEARCH, json!({})).await.status(),
        401
    );
    let t3 = f.token(&cid, chosen.expose()).await;
    let v = f
        .gql(&ta, None, ROTATE, json!({"id": cid, "secret": "short"}))
        .await;
    assert!(first_error(&v).contains("invalid secret"), "{v}");

    // forceRotateClientSecret: a random secret, same revocation.
    let v = f
        .gql(
            &ta,
            None,
            "mutation forceRotateClientSecret($id: ID!) { forceRotateClientSecret(id: $id) { clientSecret } }",
            json!({"id": obj}),
        )
        .await;
    let forced = Secret::new(
        v["data"]["forceRotateClientSecret"]["clientSecret"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(forced.expose().len(), 64);
    assert_eq!(f.token_response(&cid, chosen.expose()).await.status(), 401);
    assert_eq!(
        f.gql_raw(Some(&t3), None, SEARCH, json!({})).await.status(),
        401
    );
    let t4 = f.token(&cid, forced.expose()).await;

    let v = f.gql(&ta, None, DELETE, json!({"id": cid})).await;
    assert_eq!(v["data"]["deleteClient"]["id"], obj.as_str());
    assert_eq!(f.token_response(&cid, forced.expose()).await.status(), 401);
    assert_eq!(
        f.gql_raw(Some(&t4), None, SEARCH, json!({})).await.status(),
        401
    );
    assert!(!f.listed(&f.a).await.iter().any(|c| c.client_id == cid));
}

#[tokio::test]
async fn clients_search_filters_sorts_and_pages() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let run = suffix();
    for n in ["c", "a", "b", "a"] {
        f.create(&ta, None, &format!("pg-{run}-{n}"), None).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["data"]["clientsSearch"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let p = format!("pg-{run}-%");
    let v = f
        .gql(
            &ta,
            None,
            SEARCH,
            json!({"filters": {"name": p, "perPage": 2, "pageOffset": 1}}),
        )
        .await;
    let r = &v["data"]["clientsSearch"];
    assert_eq!(r["totalCount"], 4);
    assert_eq!(r["totalUnfilteredCount"], 5); // the 4 plus the admin
    assert_eq!(names(&v), [format!("pg-{run}-a"), format!("pg-{run}-b")]);
    let v = f
        .gql(
            &ta,
            None,
            SEARCH,
            json!({"filters": {"name": p, "sortBy": "NAME", "sortOrder": "DESC"}}),
        )
        .await;
    assert_eq!(names(&v)[0], format!("pg-{run}-c"));
    // The deprecated `clients` query pages from 1.
    let v = f
        .gql(
            &ta,
            None,
            "query clients($name: String, $page: Int, $perPage: Int) { clients(name: $name, page: $page, perPage: $perPage) { name } }",
            json!({"name": p, "page": 2, "perPage": 3}),
        )
        .await;
    assert_eq!(
        v["data"]["clients"],
        json!([{"name": format!("pg-{run}-c")}])
    );
    // Deprecated snake_case input fields work too.
    let v = f
        .gql(
            &ta,
            None,
            SEARCH,
            json!({"filters": {"name": p, "per_page": 1}}),
        )
        .await;
    assert_eq!(names(&v).len(), 1);
}

/// A fresh client per request, so no pooled connection hides what one request saw.
async fn one_shot_post(
    url: String,
    body: Value,
    token: &str,
    timeout: Duration,
) -> reqwest::Result<reqwest::Response> {
    let c = rekey::http::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap();
    c.post(url).bearer_auth(token).json(&body).send().await
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_in_seconds_or_as_a_date() {
    let f = Fixture::new().await;
    let (id, secret) = (f.a_admin.0.clone(), f.a_admin.1.expose().to_string());
    for (http_date, omit) in [(false, false), (true, false), (false, true)] {
        f.put_faults(&Faults {
            rate_limit_per_sec: Some(1.0),
            retry_after_http_date: http_date,
            omit_retry_after: omit,
            ..Default::default()
        })
        .await;
        // The bucket starts full with one token: the first passes, the second is limited.
        assert_eq!(f.token_response(&id, &secret).await.status(), 200);
        let r = f.token_response(&id, &secret).await;
        assert_eq!(r.status(), 429);
        let ra = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        match (http_date, omit) {
            (_, true) => assert_eq!(ra, None),
            (false, _) => {
                let secs: u64 = ra.unwrap().parse().expect("Retry-After in whole seconds");
                assert!((1..=2).contains(&secs));
            }
            (true, _) => {
                let when = httpdate::parse_http_date(&ra.unwrap()).expect("an HTTP date");
                assert!(when > std::time::SystemTime::now() - Duration::from_secs(1));
            }
        }
    }
    let s = f.stats().await;
    assert_eq!(s.rate_limited, 3);
    assert_eq!(s.responses["429"], 3);
    assert_eq!(s.faults_injected["rate_limit"], 3);
}

#[tokio::test]
async fn status_faults_and_error_rate_answer_before_doing_anything() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let name = format!("st-{}", suffix());
    f.put_faults(&Faults {
        fail_next: vec![OneShot {
            skip: 0,
            operation: Some("createClient".into()),
            count: 1,
            action: FaultAction::Status(503),
        }],
        ..Default::default()
    })
    .await;
    let r = f
        .gql_raw(Some(&ta), None, CREATE, json!({"name": name}))
        .await;
    assert_eq!(r.status(), 503);
    assert!(
        f.listed(&f.a).await.iter().all(|c| c.name != name),
        "a 503 must not commit"
    );
    // The one-shot is spent.
    let r = f
        .gql_raw(Some(&ta), None, CREATE, json!({"name": name}))
        .await;
    assert_eq!(r.status(), 200);

    f.put_faults(&Faults {
        error_rate: 1.0,
        fault_seed: Some(1),
        ..Default::default()
    })
    .await;
    for _ in 0..5 {
        let s = f
            .gql_raw(Some(&ta), None, SEARCH, json!({}))
            .await
            .status()
            .as_u16();
        assert!([500, 502, 503].contains(&s), "{s}");
    }
    f.put_faults(&Faults::default()).await;
    assert_eq!(
        f.gql_raw(Some(&ta), None, SEARCH, json!({})).await.status(),
        200
    );
}

#[tokio::test]
async fn drop_after_commit_applies_the_mutation_and_the_client_sees_a_transport_error() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let name = format!("drop-{}", suffix());
    f.emu
        .set_faults(Faults {
            fail_next: vec![OneShot {
                skip: 0,
                operation: Some("createClient".into()),
                count: 1,
                action: FaultAction::DropAfterCommit,
            }],
            ..Default::default()
        })
        .await;
    let body = json!({"query": CREATE, "variables": {"name": name}});
    let err = one_shot_post(f.url("/graphql"), body, &ta, Duration::from_secs(10))
        .await
        .expect_err("no response must arrive");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    let made: Vec<_> = f
        .listed(&f.a)
        .await
        .into_iter()
        .filter(|c| c.name == name)
        .collect();
    assert_eq!(made.len(), 1, "the mutation is applied exactly once");

    // The random variant, for every mutation: a rotation is applied, so the old secret dies.
    let (_, cid, s1) = f
        .create(&ta, None, &format!("drop2-{}", suffix()), None)
        .await;
    f.put_faults(&Faults {
        drop_after_commit_rate: 1.0,
        ..Default::default()
    })
    .await;
    let body = json!({"query": ROTATE, "variables": {"id": cid}});
    let err = one_shot_post(f.url("/graphql"), body, &ta, Duration::from_secs(10))
        .await
        .expect_err("no response must arrive");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(f.token_response(&cid, s1.expose()).await.status(), 401);
    // Queries are not mutations: never dropped by the rate.
    assert_eq!(
        f.gql_raw(Some(&ta), None, SEARCH, json!({})).await.status(),
        200
    );
    let s = f.stats().await;
    assert_eq!(s.connections_dropped, 2);
}

#[tokio::test]
async fn hang_never_answers_so_the_client_times_out() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    f.emu
        .set_faults(Faults {
            fail_next: vec![OneShot {
                skip: 0,
                operation: None,
                count: 1,
                action: FaultAction::Hang,
            }],
            ..Default::default()
        })
        .await;
    let started = Instant::now();
    let err = one_shot_post(
        f.url("/graphql"),
        json!({"query": SEARCH}),
        &ta,
        Duration::from_millis(300),
    )
    .await
    .expect_err("a hung request must time out");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The next request is served.
    assert_eq!(
        f.gql_raw(Some(&ta), None, SEARCH, json!({})).await.status(),
        200
    );
    // Shutting down does not wait for the hung request.
    tokio::time::timeout(Duration::from_secs(5), f.emu.shutdown())
        .await
        .expect("shutdown with a hung request");
}

#[tokio::test]
async fn truncate_no_data_and_graphql_error_spoil_the_body() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let shot = |op: &str, action| OneShot {
        skip: 0,
        operation: Some(op.into()),
        count: 1,
        action,
    };
    f.put_faults(&Faults {
        fail_next: vec![
            shot("token", FaultAction::Truncate),
            shot("clientsSearch", FaultAction::NoData),
            shot("client", FaultAction::GraphqlError),
        ],
        ..Default::default()
    })
    .await;

    let r = f.token_response(&f.a_admin.0, f.a_admin.1.expose()).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.is_empty() && serde_json::from_str::<Value>(&text).is_err());

    let v = f.gql(&ta, None, SEARCH, json!({})).await;
    assert_eq!(v, json!({}));

    let v = f.gql(&ta, None, GET, json!({"id": f.a_admin.0})).await;
    assert_eq!(v["data"], Value::Null);
    assert!(!first_error(&v).is_empty());

    // All spent: the same calls work again.
    let v = f.gql(&ta, None, GET, json!({"id": f.a_admin.0})).await;
    assert_eq!(v["data"]["client"]["clientID"], f.a_admin.0.as_str());
    let s = f.stats().await;
    for kind in ["truncate", "no_data", "graphql_error"] {
        assert_eq!(s.faults_injected[kind], 1, "{kind}");
    }
}

#[tokio::test]
async fn latency_delays_requests() {
    let f = Fixture::with_config(EmulatorConfig {
        faults: Faults {
            latency_ms: 150,
            latency_jitter_ms: 50,
            fault_seed: Some(3),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    f.token(&f.a_admin.0, f.a_admin.1.expose()).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    // Test endpoints are never delayed or faulted.
    let got: Faults = f
        .http
        .get(f.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.latency_ms, 150);
    let bad = f
        .http
        .put(f.url("/_emulator/faults"))
        .json(&json!({"error_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emulator-state.json");
    let f = Fixture::with_config(EmulatorConfig {
        state_file: Some(path.clone()),
        ..Default::default()
    })
    .await;
    let ta = f.admin_token(false).await;
    let name = format!("persist-{}", suffix());
    let (obj, cid, secret) = f
        .create(&ta, None, &name, Some(vec![TENANT_ADMIN_ROLE]))
        .await;
    let token = f.token(&cid, secret.expose()).await;
    let seed = seed(&f.a, &f.a1, &f.b, &f.a_admin, &f.b_admin);
    let addr = f.emu.addr();
    f.emu.shutdown().await;

    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(secret.expose()),
            "the state file holds a secret"
        );
        assert!(
            !text.contains(f.a_admin.1.expose()),
            "the state file holds a secret"
        );
    }

    // Same seed again, as `rekey emulator` would be restarted; same port if it is free.
    let config = EmulatorConfig {
        seed,
        state_file: Some(path.clone()),
        ..Default::default()
    };
    let emu = match emulator::start(config.clone(), addr).await {
        Ok(e) => e,
        Err(_) => emulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
    };
    let g = Fixture {
        emu,
        http: http(),
        a: f.a.clone(),
        a1: f.a1.clone(),
        b: f.b.clone(),
        a_admin: f.a_admin.clone(),
        b_admin: f.b_admin.clone(),
    };
    assert!(
        g.listed(&g.a)
            .await
            .iter()
            .any(|c| c.id == obj && c.name == name)
    );
    // The secret still works, and so does the token minted before the restart.
    g.token(&cid, secret.expose()).await;
    let v = g.gql(&token, None, GET, json!({"id": obj})).await;
    assert_eq!(v["data"]["client"]["clientID"], cid.as_str());
    g.emu.shutdown().await;
}

#[tokio::test]
async fn stats_count_operations_and_statuses() {
    let f = Fixture::new().await;
    let ta = f.admin_token(false).await;
    let (obj, _, _) = f.create(&ta, None, &format!("st-{}", suffix()), None).await;
    f.gql(&ta, None, ROTATE, json!({"id": obj})).await;
    f.gql(&ta, None, SEARCH, json!({})).await;
    f.gql(&ta, None, "{ __schema { types { name } } }", json!({}))
        .await;
    f.gql(&ta, None, DELETE, json!({"id": obj})).await;
    f.gql_raw(None, None, SEARCH, json!({})).await;
    f.token_response("nobody", "nothing").await;
    let s = f.emu.stats().await;
    let req = |k: &str| s.requests.get(k).copied().unwrap_or(0);
    assert_eq!(req("token"), 2);
    assert_eq!(req("createClient"), 1);
    assert_eq!(req("rotateClientSecret"), 1);
    assert_eq!(req("deleteClient"), 1);
    assert_eq!(req("clientsSearch"), 2);
    assert_eq!(req("introspection"), 1);
    assert_eq!(s.responses["200"], 6);
    assert_eq!(s.responses["401"], 2);
    assert_eq!(s, f.stats().await, "the HTTP view matches the handle's");
}

#[tokio::test]
async fn test_endpoints_add_tenants_and_list_clients_without_secrets() {
    let f = Fixture::new().await;
    let t = format!("{}9", f.b);
    let c = ("added".to_string() + &suffix(), Secret::generate(40));
    let body = SeedTenant {
        id: t.clone(),
        parent: Some(f.b.clone()),
        clients: vec![seed_admin(&c.0, &c.1)],
    };
    let r = f
        .http
        .post(f.url("/_emulator/tenants"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains(c.1.expose()));
    let r = f
        .http
        .post(f.url("/_emulator/tenants"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let list_text = f
        .http
        .get(f.url(&format!("/_emulator/tenants/{t}/clients")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list_text.contains(c.1.expose()) && !list_text.to_lowercase().contains("secret"));
    let list: Vec<ClientSummary> = serde_json::from_str(&list_text).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].roles, [TENANT_ADMIN_ROLE]);
    // The new tenant is B's child: B's admin may act in it.
    let tb = f.admin_token(true).await;
    let v = f.gql(&tb, Some(&t), SEARCH, json!({})).await;
    assert_eq!(v["data"]["clientsSearch"]["totalCount"], 1);
    let r = f
        .http
        .get(f.url("/_emulator/tenants/nope/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
