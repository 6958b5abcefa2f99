use super::*;
use crate::check::*;

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

fn parse_ok(text: &str) -> Inventory {
    match parse(text, Path::new("/etc/rekey/inv.toml")) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new("inv.toml")) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0,
    }
}

fn one(text: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn minimal_inventory_gets_defaults() {
    let inv = parse_ok(BASE);
    assert_eq!(inv.settings.name_prefix, "rekey-");
    assert_eq!(inv.settings.concurrency, 16);
    let s = &inv.slots[0];
    assert_eq!(s.name, "s1");
    assert_eq!(s.line, 11);
    assert_eq!(s.strategy, Strategy::Alternate);
    assert_eq!(s.max_age, Duration::from_secs(30 * 86400));
    assert_eq!(s.grace, Duration::from_secs(86400));
    assert_eq!(s.backend, "b", "the only backend is the default");
    assert!(!s.retired);
    let p = &inv.providers["p"];
    assert_eq!(p.rate_limit, 50.0);
    assert_eq!(p.timeout, Duration::from_secs(30));
    let ProviderKind::Taegis(t) = &p.kind else {
        panic!("not taegis")
    };
    assert_eq!(t.base_url, "https://api.ctpx.secureworks.com");
    assert_eq!(t.environment.as_deref(), Some("us1"));
    assert!(!t.caller_chosen_secret);
    assert_eq!(
        p.bootstrap,
        BootstrapConfig::Static(PairRef {
            client_id: ValueRef::Env("ID".into()),
            client_secret: ValueRef::Env("SECRET".into()),
        })
    );
    let BackendConfig::File(b) = &inv.backends["b"] else {
        panic!("a file backend")
    };
    assert_eq!(b.path, Path::new("/etc/rekey/store"));
    assert_eq!(b.identity, ValueRef::File("/etc/rekey/key.txt".into()));
}

#[test]
fn the_sample_inventory_parses_with_every_option() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml");
    let inv = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.slots.len(), 4);
    let s = &inv.slots[0];
    assert_eq!(s.strategy, Strategy::InPlace);
    assert_eq!(s.max_age, Duration::from_secs(7 * 86400));
    assert_eq!(s.grace, Duration::from_secs(3600));
    assert_eq!(inv.slots[1].tenant, "11772", "tenant from the provider");
    assert!(inv.slots[3].retired);
    let eu = &inv.providers["taegis-eu"];
    let ProviderKind::Taegis(t) = &eu.kind else {
        panic!("not taegis")
    };
    assert_eq!(t.base_url, "https://api.echo.taegis.secureworks.com");
    assert_eq!(t.environment, None);
    let BootstrapConfig::Slot { slot, seed } = &eu.bootstrap else {
        panic!("slot bootstrap expected");
    };
    assert_eq!(slot, "rekey-admin-eu");
    let seed = seed.as_ref().expect("seed");
    assert_eq!(seed.client_id, ValueRef::Literal("seed-client-id".into()));
    assert_eq!(
        seed.client_secret,
        ValueRef::File(path.parent().unwrap().join("./secrets/eu-seed-secret"))
    );
    let BackendConfig::File(b) = &inv.backends["local"] else {
        panic!("a file backend")
    };
    assert_eq!(b.recipients.len(), 1);
}

#[test]
fn environment_names_are_case_insensitive() {
    let inv = parse_ok(&BASE.replace("\"us1\"", "\"Delta\""));
    let ProviderKind::Taegis(t) = &inv.providers["p"].kind else {
        panic!("not taegis")
    };
    assert_eq!(t.base_url, "https://api.delta.taegis.secureworks.com");
    assert_eq!(t.environment.as_deref(), Some("delta"));
}

#[test]
fn loopback_http_url_is_allowed_and_trimmed() {
    for url in [
        "http://127.0.0.1:8080/",
        "http://localhost:1",
        "http://[::1]:9/api/",
    ] {
        let text = BASE.replace("environment = \"us1\"", &format!("url = \"{url}\""));
        let inv = parse_ok(&text);
        let ProviderKind::Taegis(t) = &inv.providers["p"].kind else {
            panic!("not taegis")
        };
        assert!(!t.base_url.ends_with('/'), "{}", t.base_url);
    }
}

#[test]
fn zero_grace_is_allowed() {
    let inv = parse_ok(&format!("{BASE}grace = \"0s\"\n"));
    assert_eq!(inv.slots[0].grace, Duration::ZERO);
}

#[test]
fn a_syntax_error_is_one_error_with_its_line() {
    let e = one("[settings]\nprune = false\nconcurrency = = 3\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("TOML syntax error"), "{}", e.message);
}

#[test]
fn unknown_key_suggests_the_near_one() {
    let e = one(&BASE.replace("environment", "enviroment"));
    assert_eq!(e.key, "providers.p.enviroment");
    assert_eq!(e.line, Some(3));
    assert!(
        e.message.contains("did you mean `environment`?"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("known keys here: type, environment, url"),
        "{}",
        e.message
    );
}

#[test]
fn literal_secret_is_refused_and_never_echoed() {
    let text = BASE.replace(
        "client_secret = { env = \"SECRET\" }",
        "client_secret = \"hunter2-s3cr3t\"",
    );
    let e = one(&text);
    assert_eq!(e.key, "providers.p.bootstrap.client_secret");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("by reference"));
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn secret_pasted_as_env_name_is_not_echoed() {
    let text = BASE.replace("{ env = \"SECRET\" }", "{ env = \"abc/def+ghi=\" }");
    let e = one(&text);
    assert_eq!(e.key, "providers.p.bootstrap.client_secret.env");
    assert!(!e.message.contains("abc/def"), "{}", e.message);
}

#[test]
fn url_with_credentials_is_refused_without_echo() {
    let text = BASE.replace(
        "environment = \"us1\"",
        "url = \"https://user:pa55word@api.example\"",
    );
    let e = one(&text);
    assert_eq!(e.key, "providers.p.url");
    assert!(!e.message.contains("pa55word"), "{}", e.message);
}

#[test]
fn line_counting() {
    let l = Lines::new("a\nbb\n\nc");
    assert_eq!(
        [l.line(0), l.line(1), l.line(2), l.line(5), l.line(6)],
        [1, 1, 2, 3, 4]
    );
}

#[test]
fn distance_is_levenshtein() {
    assert_eq!(distance("grace", "grcae"), 2);
    assert_eq!(distance("", "abc"), 3);
    assert_eq!(distance("max_age", "max_age"), 0);
}

const CISCO: &str = r#"[providers.c]
type = "cisco"
region = "eu"
bootstrap = { client_id = { env = "CID" }, client_secret = { env = "CSECRET" } }

[backends.b]
type = "file"
path = "store"
identity = { file = "key.txt" }
"#;

#[test]
fn cisco_provider_and_slot_defaults() {
    let inv = parse_ok(&format!(
        "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"enrich:read\"]\n"
    ));
    let ProviderKind::Cisco(c) = &inv.providers["c"].kind else {
        panic!("not cisco")
    };
    assert_eq!(c.base_url, "https://visibility.eu.amp.cisco.com");
    assert_eq!(c.clients_path, "/iroh/oauth2-clients/clients");
    assert_eq!(c.client_path, "/iroh/oauth2-clients/clients/{id}");
    assert_eq!(c.availability, "org");
    assert_eq!(c.org_hourly_budget, 8000);
    assert_eq!(inv.providers["c"].kind.type_name(), "cisco");
    let slot = &inv.slots[0];
    assert_eq!(slot.tenant, CISCO_DEFAULT_TENANT);
    assert_eq!(CISCO_DEFAULT_TENANT, "org");
    assert_eq!(slot.roles, ["enrich:read"]);
}

#[test]
fn cisco_paths_url_and_budget_are_configurable() {
    let text = CISCO.replace(
        "region = \"eu\"",
        "url = \"http://127.0.0.1:9/\"\npaths = { clients = \"/x/clients\", client = \"/x/clients/{id}\" }\norg_hourly_budget = 500\ntenant = \"my-org\"",
    );
    let inv = parse_ok(&format!(
        "{text}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nroles = [\"inspect\"]\n"
    ));
    let ProviderKind::Cisco(c) = &inv.providers["c"].kind else {
        panic!("not cisco")
    };
    assert_eq!(c.base_url, "http://127.0.0.1:9");
    assert_eq!(c.clients_path, "/x/clients");
    assert_eq!(c.org_hourly_budget, 500);
    assert_eq!(
        inv.slots[0].tenant, "my-org",
        "Taegis's numeric rule does not apply"
    );
}

#[test]
fn cisco_mistakes_are_located() {
    let e = one(&CISCO.replace("region = \"eu\"", "region = \"mars\""));
    assert!(e.message.contains("us, eu, apjc"), "{e}");
    let e = one(&CISCO.replace(
        "region = \"eu\"",
        "region = \"eu\"\nurl = \"https://x.example\"",
    ));
    assert!(e.message.contains("not both"), "{e}");
    let e = one(&CISCO.replace(
        "region = \"eu\"",
        "region = \"eu\"\npaths = { client = \"/no-id\" }",
    ));
    assert_eq!(e.key, "providers.c.paths.client");
    let e = one(&CISCO.replace("region = \"eu\"", "region = \"eu\"\nenvironment = \"us1\""));
    assert!(e.message.contains("unknown key"), "{e}");

    // No scopes at all.
    let e = one(&format!(
        "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\n"
    ));
    assert_eq!(e.key, "slots[0].scopes");
    // in-place on the slot, and through [defaults], both name the slot.
    let e = one(&format!(
        "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"a\"]\nstrategy = \"in-place\"\n"
    ));
    assert_eq!((e.key.as_str(), e.line), ("slots[0].strategy", Some(15)));
    assert!(
        e.message.contains("\"x\"") && e.message.contains("alternate"),
        "{e}"
    );
    let e = one(&format!(
        "[defaults]\nstrategy = \"in-place\"\n\n{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"a\"]\n"
    ));
    assert!(e.message.contains("from [defaults]"), "{e}");
    assert_eq!(e.line, Some(14));
}

#[test]
fn scopes_belong_to_cisco_slots_and_a_cisco_bootstrap_slot_needs_oauth() {
    let e = one(&format!("{BASE}scopes = [\"a\"]\n"));
    assert!(e.message.contains("Cisco"), "{e}");
    let text = CISCO.replace(
        "bootstrap = { client_id = { env = \"CID\" }, client_secret = { env = \"CSECRET\" } }",
        "bootstrap = { slot = \"boot\" }",
    );
    let e = one(&format!(
        "{text}\n[[slots]]\nname = \"boot\"\nprovider = \"c\"\nscopes = [\"profile\"]\n"
    ));
    assert!(e.message.contains("\"oauth\""), "{e}");
    parse_ok(&format!(
        "{text}\n[[slots]]\nname = \"boot\"\nprovider = \"c\"\nscopes = [\"oauth\", \"profile\"]\n"
    ));
}

#[test]
fn instance_and_retire_limits() {
    let inv = parse_ok(&format!(
        "[settings]\ninstance = \"eu-prod-2\"\nmax_retire = 2\nmax_retire_percent = 10\n{BASE}"
    ));
    assert_eq!(inv.settings.instance, "eu-prod-2");
    assert_eq!(inv.settings.max_retire, 2);
    assert_eq!(inv.settings.max_retire_percent, 10);
    assert_eq!(parse_ok(BASE).settings.instance, "");
    assert_eq!(parse_ok(BASE).default_grace, Duration::from_secs(86_400));
    for bad in ["EU", "-eu", "eu-", "e_u", "", &"x".repeat(33)] {
        let e = one(&format!("[settings]\ninstance = \"{bad}\"\n{BASE}"));
        assert_eq!(
            (e.key.as_str(), e.line),
            ("settings.instance", Some(2)),
            "{bad}"
        );
    }
    let e = one(&format!("[settings]\nmax_retire_percent = 101\n{BASE}"));
    assert_eq!(e.key, "settings.max_retire_percent");
}

#[test]
fn durations_are_bounded() {
    for (line, key) in [
        ("lease_ttl = \"25h\"", "settings.lease_ttl"),
        ("verify_delay = \"11m\"", "settings.verify_delay"),
        ("jitter = \"1000000y\"", "settings.jitter"),
        (
            "lease_ttl = \"99999999999999999999y\"",
            "settings.lease_ttl",
        ),
    ] {
        let e = one(&format!("[settings]\n{line}\n{BASE}"));
        assert_eq!((e.key.as_str(), e.line), (key, Some(2)), "{line}");
        assert!(e.message.contains("must be at most"), "{e}");
    }
    let e = one(&format!("{BASE}grace = \"11y\"\n"));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("slots[0].grace", Some(15)),
        "{e}"
    );
    // Ten years is still fine (and a grace shorter than it).
    let inv = parse_ok(&format!("{BASE}max_age = \"10y\"\ngrace = \"9y\"\n"));
    assert_eq!(inv.slots[0].max_age, MAX_DURATION);
    parse_ok(&format!("[settings]\nlease_ttl = \"24h\"\n{BASE}"));
}

#[test]
fn a_provider_of_unknown_type_is_blamed_once_not_in_its_slots() {
    let text = BASE.replace("type = \"taegis\"", "type = \"okta\"");
    for extra in [
        "scopes = [\"a\"]\n",
        "tenant = \"acme\"\nstrategy = \"in-place\"\n",
    ] {
        let e = one(&format!("{}{extra}", text.replace("tenant = \"1\"\n", "")));
        assert_eq!(e.key, "providers.p.type", "{e}");
    }
}

#[test]
fn prune_with_no_slots_is_refused() {
    let no_slots = BASE.split("[[slots]]").next().unwrap();
    let e = one(&format!("[settings]\nprune = true\n{no_slots}"));
    assert_eq!((e.key.as_str(), e.line), ("settings.prune", Some(2)));
    assert!(e.message.contains("never prunes"), "{e}");
    parse_ok(&format!("[settings]\nprune = false\n{no_slots}"));
    parse_ok(no_slots);
}

#[test]
fn the_drain_policy_defaults_to_until_unused_and_a_slot_overrides_defaults() {
    let inv = parse_ok(BASE);
    assert_eq!(inv.slots[0].drain, DrainPolicy::default());
    assert_eq!(inv.slots[0].drain.mode, DrainMode::UntilUnused);
    assert_eq!(inv.slots[0].drain.on_timeout, OnDrainTimeout::Keep);
    let text = format!(
        "[defaults]\ndrain_quiet = \"3h\"\non_drain_timeout = \"delete\"\n\n{BASE}drain = \"grace-only\"\ndrain_timeout = \"2d\"\n"
    );
    let d = parse_ok(&text).slots[0].drain;
    assert_eq!(d.mode, DrainMode::GraceOnly);
    assert_eq!(d.quiet, Duration::from_secs(3 * 3600), "from [defaults]");
    assert_eq!(d.timeout, Duration::from_secs(2 * 86400));
    assert_eq!(d.on_timeout, OnDrainTimeout::Delete);
}

#[test]
fn a_bad_drain_policy_names_its_line_key_and_the_choices() {
    let e = one(&format!("{BASE}drain = \"whenever\"\n"));
    assert_eq!((e.key.as_str(), e.line), ("slots[0].drain", Some(15)));
    assert!(
        e.message.contains("\"until-unused\"") && e.message.contains("\"grace-only\""),
        "{e}"
    );
    let e = one(&format!(
        "[defaults]\non_drain_timeout = \"maybe\"\n\n{BASE}"
    ));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("defaults.on_drain_timeout", Some(2))
    );
    assert!(e.message.contains("\"keep\""), "{e}");
    let e = one(&format!("{BASE}drain_quiet = \"0s\"\n"));
    assert_eq!(e.key, "slots[0].drain_quiet");
}
