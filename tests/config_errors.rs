//! Bad inventories: each problem is reported with its file, line, dotted key and a message
//! a tired on-call person understands. Every problem at once, none silently fixed.

use rekey::config::{ConfigError, parse};
use std::path::Path;

/// A valid inventory; the line numbers of its keys are what the cases below point at.
const BASE: &str = r#"[providers.p]
type = "taegis"
environment = "us1"
bootstrap = { client_id = { env = "ID" }, client_secret = { env = "SECRET" } }

[backends.b]
type = "file"
path = "store"
identity = { file = "key.txt" }

[[slots]]
name = "s1"
provider = "p"
tenant = "1"
"#;

const ADMIN: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new("inv.toml")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts exactly one problem, at `key` on `line`, whose message contains `needle`.
#[track_caller]
fn one(text: &str, key: &str, line: usize, needle: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(
        errs.len(),
        1,
        "expected one error, got {errs:#?}\nfor:\n{text}"
    );
    let e = errs.into_iter().next().unwrap();
    assert_eq!(e.key, key, "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert!(e.message.contains(needle), "message lacks {needle:?}: {e}");
    assert_eq!(e.file, Path::new("inv.toml"));
    e
}

fn append(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_is_valid() {
    parse(BASE, Path::new("inv.toml")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn toml_syntax_error() {
    let e = one(
        &replace("name = \"s1\"", "name = \"s1"),
        "-",
        12,
        "TOML syntax error",
    );
    assert!(e.message.contains("column"), "{e}");
}

#[test]
fn unknown_top_level_key() {
    one(
        &format!("colour = \"blue\"\n{BASE}"),
        "colour",
        1,
        "known keys here: settings, defaults, providers, backends, slots",
    );
}

#[test]
fn unknown_key_in_a_slot_with_suggestion() {
    one(
        &append("max_agee = \"7d\"\n"),
        "slots[0].max_agee",
        15,
        "did you mean `max_age`?",
    );
}

#[test]
fn unknown_provider_type_lists_known_types() {
    one(
        &replace("type = \"taegis\"", "type = \"okta\""),
        "providers.p.type",
        2,
        "unknown type \"okta\"; known types: taegis",
    );
}

#[test]
fn unknown_backend_type_lists_known_types() {
    one(
        &replace("type = \"file\"", "type = \"keepass\""),
        "backends.b.type",
        7,
        "unknown type \"keepass\"; known types: file, exec, vault, aws",
    );
}

#[test]
fn missing_required_key_points_at_its_table() {
    one(
        &replace("path = \"store\"\n", ""),
        "backends.b.path",
        6,
        "missing required key `path`",
    );
}

#[test]
fn missing_key_in_an_inline_table() {
    one(
        &replace(", client_secret = { env = \"SECRET\" } }", " }"),
        "providers.p.bootstrap.client_secret",
        4,
        "missing required key `client_secret`",
    );
}

#[test]
fn wrong_value_type() {
    one(
        &append("retired = \"yes\"\n"),
        "slots[0].retired",
        15,
        "must be true or false, found a string",
    );
}

#[test]
fn duplicate_slot_names() {
    one(
        &append("\n[[slots]]\nname = \"s1\"\nprovider = \"p\"\ntenant = \"2\"\n"),
        "slots[1].name",
        17,
        "\"s1\" is already used by slots[0] (line 11)",
    );
}

#[test]
fn slot_names_an_undefined_provider() {
    one(
        &replace("provider = \"p\"", "provider = \"q\""),
        "slots[0].provider",
        13,
        "provider \"q\" is not defined; defined providers: p",
    );
}

#[test]
fn slot_names_an_undefined_backend() {
    one(
        &append("backend = \"vault-main\"\n"),
        "slots[0].backend",
        15,
        "backend \"vault-main\" is not defined; defined backends: b",
    );
}

#[test]
fn malformed_duration() {
    one(
        &append("max_age = \"30 dayz\"\n"),
        "slots[0].max_age",
        15,
        "\"30 dayz\" is not a duration",
    );
}

#[test]
fn duration_given_as_a_number() {
    one(
        &append("grace = 3600\n"),
        "slots[0].grace",
        15,
        "must be a duration in quotes",
    );
}

#[test]
fn literal_secret_is_refused_and_not_echoed() {
    let e = one(
        &replace(
            "identity = { file = \"key.txt\" }",
            "identity = \"AGE-SECRET-KEY-1QQQTOPSECRET\"",
        ),
        "backends.b.identity",
        9,
        "a secret must be given by reference: { env = \"NAME\" } or { file = \"PATH\" }",
    );
    assert!(!e.to_string().contains("TOPSECRET"));
}

#[test]
fn secret_of_the_wrong_type_is_not_echoed() {
    let e = one(
        &replace(
            "client_secret = { env = \"SECRET\" }",
            "client_secret = 987654321",
        ),
        "providers.p.bootstrap.client_secret",
        4,
        "must be a reference",
    );
    assert!(!e.to_string().contains("987654321"));
}

#[test]
fn reference_with_both_env_and_file() {
    one(
        &replace("{ env = \"ID\" }", "{ env = \"ID\", file = \"id.txt\" }"),
        "providers.p.bootstrap.client_id.file",
        4,
        "either env or file, not both",
    );
}

#[test]
fn unknown_taegis_environment_lists_valid_names() {
    let e = one(
        &replace("environment = \"us1\"", "environment = \"us9\""),
        "providers.p.environment",
        3,
        "unknown Taegis environment \"us9\"; valid names: charlie, production, us1, delta, us2",
    );
    assert!(e.message.contains("quebec, cac1"), "{e}");
}

#[test]
fn both_environment_and_url() {
    one(
        &replace(
            "environment = \"us1\"\n",
            "environment = \"us1\"\nurl = \"https://api.example\"\n",
        ),
        "providers.p.url",
        4,
        "either environment or url, not both",
    );
}

#[test]
fn neither_environment_nor_url() {
    one(
        &replace("environment = \"us1\"\n", ""),
        "providers.p.environment",
        1,
        "missing required key `environment`",
    );
}

#[test]
fn plain_http_to_a_remote_host() {
    one(
        &replace("environment = \"us1\"", "url = \"http://api.example.com\""),
        "providers.p.url",
        3,
        "plain http is allowed only to loopback hosts",
    );
}

#[test]
fn bad_slot_name() {
    one(
        &replace("name = \"s1\"", "name = \"Siem Acme\""),
        "slots[0].name",
        12,
        "\"Siem Acme\" is not a valid slot name",
    );
}

#[test]
fn missing_tenant() {
    one(
        &replace("tenant = \"1\"\n", ""),
        "slots[0].tenant",
        11,
        "missing tenant: set tenant = \"...\" here or a default tenant in [providers.p]",
    );
}

#[test]
fn non_numeric_taegis_tenant() {
    one(
        &replace("tenant = \"1\"", "tenant = \"acme\""),
        "slots[0].tenant",
        14,
        "Taegis tenant ids are numbers such as \"11772\"; \"acme\" is not",
    );
}

#[test]
fn tenant_given_as_an_integer() {
    one(
        &replace("tenant = \"1\"", "tenant = 11772"),
        "slots[0].tenant",
        14,
        "write tenant = \"11772\"",
    );
}

#[test]
fn grace_not_shorter_than_max_age_in_a_slot() {
    one(
        &append("max_age = \"1h\"\ngrace = \"2h\"\n"),
        "slots[0].grace",
        16,
        "grace (2h) must be shorter than max_age (1h)",
    );
}

#[test]
fn grace_not_shorter_than_max_age_in_defaults() {
    // Reported once, at [defaults], not again for each slot using the defaults.
    one(
        &format!("[defaults]\nmax_age = \"1d\"\ngrace = \"1d\"\n\n{BASE}"),
        "defaults.grace",
        3,
        "grace (1day) must be shorter than max_age (1day)",
    );
}

#[test]
fn zero_concurrency() {
    one(
        &format!("[settings]\nconcurrency = 0\n\n{BASE}"),
        "settings.concurrency",
        2,
        "must be at least 1",
    );
}

#[test]
fn bad_name_prefix() {
    one(
        &format!("[settings]\nname_prefix = \"\"\n{BASE}"),
        "settings.name_prefix",
        2,
        "not a valid name prefix",
    );
}

#[test]
fn unknown_strategy() {
    one(
        &append("strategy = \"blue-green\"\n"),
        "slots[0].strategy",
        15,
        "unknown strategy \"blue-green\"; use \"alternate\" or \"in-place\"",
    );
}

#[test]
fn bootstrap_slot_that_does_not_exist() {
    one(
        &replace(
            "bootstrap = { client_id = { env = \"ID\" }, client_secret = { env = \"SECRET\" } }",
            "bootstrap = { slot = \"admin\" }",
        ),
        "providers.p.bootstrap.slot",
        4,
        "bootstrap slot \"admin\" is not a slot in this inventory (slots of provider p: s1)",
    );
}

#[test]
fn bootstrap_slot_of_another_provider() {
    let text = format!(
        "{BASE}\n[providers.q]\ntype = \"taegis\"\nenvironment = \"eu\"\nbootstrap = {{ slot = \"s1\" }}\n"
    );
    one(
        &text,
        "providers.q.bootstrap.slot",
        19,
        "bootstrap slot \"s1\" belongs to provider \"p\", not \"q\"",
    );
}

#[test]
fn retired_bootstrap_slot() {
    let text = replace(
        "bootstrap = { client_id = { env = \"ID\" }, client_secret = { env = \"SECRET\" } }",
        "bootstrap = { slot = \"s1\" }",
    ) + &format!("roles = [\"{ADMIN}\"]\nretired = true\n");
    one(
        &text,
        "slots[0].retired",
        16,
        "holds the bootstrap credential of provider \"p\" (providers.p.bootstrap.slot, line 4) and cannot be retired",
    );
}

#[test]
fn bootstrap_slot_without_tenant_admin() {
    let text = replace(
        "bootstrap = { client_id = { env = \"ID\" }, client_secret = { env = \"SECRET\" } }",
        "[providers.p.bootstrap]\nslot = \"s1\"\nseed = { client_id = \"abc\", client_secret = { env = \"SEED\" } }",
    ) + "roles = [\"11111111-2222-3333-4444-555555555555\"]\n";
    one(
        &text,
        "slots[0].roles",
        17,
        "its roles must include Tenant Admin (ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068)",
    );
}

#[test]
fn seed_without_slot() {
    one(
        &replace(
            "client_secret = { env = \"SECRET\" } }",
            "client_secret = { env = \"SECRET\" }, seed = {} }",
        ),
        "providers.p.bootstrap.seed",
        4,
        "seed is used only with slot",
    );
}

#[test]
fn several_backends_and_none_chosen() {
    let text = replace(
        "[[slots]]",
        "[backends.c]\ntype = \"file\"\npath = \"other\"\nidentity = { env = \"KEY\" }\n\n[[slots]]",
    );
    one(
        &text,
        "slots[0].backend",
        16,
        "which backend? 2 are defined (b, c): set backend here or in [defaults]",
    );
}

#[test]
fn no_backend_at_all() {
    let start = BASE.find("[backends.b]").unwrap();
    let end = BASE.find("[[slots]]").unwrap();
    let text = format!("{}{}", &BASE[..start], &BASE[end..]);
    one(&text, "backends", 6, "no backend is defined");
}

#[test]
fn defaults_name_an_undefined_backend() {
    one(
        &format!("[defaults]\nbackend = \"nope\"\n\n{BASE}"),
        "defaults.backend",
        2,
        "backend \"nope\" is not defined",
    );
}

#[test]
fn invalid_age_recipient() {
    one(
        &append("").replace(
            "identity = { file = \"key.txt\" }",
            "identity = { file = \"key.txt\" }\nrecipients = [\n  \"age1notarecipient\",\n]",
        ),
        "backends.b.recipients[0]",
        11,
        "\"age1notarecipient\" is not an age X25519 recipient",
    );
}

#[test]
fn slots_as_a_plain_table() {
    one(
        &replace("[[slots]]", "[slots]"),
        "slots",
        11,
        "must be an array of tables (write each slot as [[slots]])",
    );
}

#[test]
fn unknown_in_place_secret_mode() {
    one(
        &replace(
            "environment = \"us1\"\n",
            "environment = \"us1\"\nin_place_secret = \"client\"\n",
        ),
        "providers.p.in_place_secret",
        4,
        "use \"server\" or \"caller\"",
    );
}

#[test]
fn five_problems_are_all_reported_in_line_order() {
    let text = r#"[settings]
concurrency = 0

[providers.p]
type = "taegis"
environment = "mars"
bootstrap = { client_id = "id", client_secret = "plain-text-secret" }

[backends.b]
type = "file"
path = "store"
identity = { env = "KEY" }

[[slots]]
name = "ok-slot"
provider = "p"
tenant = "1"
max_age = "soon"

[[slots]]
name = "other"
provider = "nope"
tenant = "2"
"#;
    let errs = errors(text);
    let got: Vec<(&str, Option<usize>)> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![
            ("settings.concurrency", Some(2)),
            ("providers.p.environment", Some(6)),
            ("providers.p.bootstrap.client_secret", Some(7)),
            ("slots[0].max_age", Some(18)),
            ("slots[1].provider", Some(22)),
        ],
        "{errs:#?}"
    );
    let shown = rekey::config::ConfigErrors(errs).to_string();
    assert!(
        shown.starts_with("the inventory has 5 problems:\n  inv.toml:2: settings.concurrency: "),
        "{shown}"
    );
    assert!(!shown.contains("plain-text-secret"), "{shown}");
}

#[test]
fn the_sample_inventory_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml");
    let inv = rekey::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.slots.len(), 4);
    assert_eq!(inv.providers.len(), 2);
}
