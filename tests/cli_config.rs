//! Bad inventories through the real command line: exit code 2, a message naming the file, the
//! line and the key, and nothing changed at the platform or in the backend.

mod common;
use common::World;

/// A valid inventory body (after the world's header) to break in one place at a time.
fn good() -> String {
    "[[slots]]\nname = \"alpha\"\nprovider = \"p0\"\nroles = [\"ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068\"]\n\n\
     [[slots]]\nname = \"beta\"\nprovider = \"p0\"\nstrategy = \"in-place\"\n"
        .to_string()
}

struct Case {
    name: &'static str,
    /// Turns the full valid inventory text into a broken one.
    breaks: fn(String) -> String,
    /// Words the error must contain.
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key in a slot",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nrolez = []",
            )
        },
        says: &["rolez"],
    },
    Case {
        name: "unknown top-level table",
        breaks: |t| format!("{t}\n[extras]\nx = 1\n"),
        says: &["extras"],
    },
    Case {
        name: "duplicate slot name",
        breaks: |t| t.replace("name = \"beta\"", "name = \"alpha\""),
        says: &["alpha", "already used"],
    },
    Case {
        name: "undefined provider",
        breaks: |t| {
            t.replace(
                "provider = \"p0\"\nstrategy",
                "provider = \"nope\"\nstrategy",
            )
        },
        says: &["nope"],
    },
    Case {
        name: "undefined backend",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nbackend = \"vault9\"",
            )
        },
        says: &["vault9"],
    },
    Case {
        name: "malformed duration",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nmax_age = \"thirty days\"",
            )
        },
        says: &["max_age"],
    },
    Case {
        name: "literal secret",
        breaks: |t| {
            t.replacen(
                "client_secret = { file = \"boot-0.secret\" }",
                "client_secret = \"hunter2hunter2\"",
                1,
            )
        },
        says: &["client_secret", "reference"],
    },
    Case {
        name: "unknown provider type",
        breaks: |t| t.replacen("type = \"taegis\"", "type = \"okta\"", 1),
        says: &["okta", "taegis"],
    },
    Case {
        name: "unknown backend type",
        breaks: |t| t.replacen("type = \"file\"", "type = \"s3\"", 1),
        says: &["s3", "file"],
    },
    Case {
        name: "unknown taegis environment",
        breaks: |t| t.replacen("url = \"", "environment = \"mars\"\n#url = \"", 1),
        says: &["mars"],
    },
    Case {
        name: "plain http to a remote host",
        breaks: |t| regex_url(&t, "http://api.example.com"),
        says: &["http"],
    },
    Case {
        name: "bad slot name",
        breaks: |t| t.replace("name = \"beta\"", "name = \"Beta Slot!\""),
        says: &["Beta Slot!"],
    },
    Case {
        name: "missing tenant",
        breaks: |t| strip_tenant(&t),
        says: &["tenant"],
    },
    Case {
        name: "non-numeric tenant",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\ntenant = \"acme\"",
            )
        },
        says: &["tenant", "acme"],
    },
    Case {
        name: "grace longer than max_age",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nmax_age = \"1h\"\ngrace = \"2h\"",
            )
        },
        says: &["grace"],
    },
    Case {
        name: "TOML syntax error",
        breaks: |t| t.replace("name = \"beta\"", "name = \"beta"),
        says: &["inventory.toml:"],
    },
    Case {
        name: "unknown strategy",
        breaks: |t| t.replace("strategy = \"in-place\"", "strategy = \"sideways\""),
        says: &["sideways"],
    },
    Case {
        name: "bootstrap slot not in the inventory",
        breaks: |t| {
            t.replacen(
                "bootstrap = {",
                "bootstrap = { slot = \"ghost\" }\n#bootstrap = {",
                1,
            )
        },
        says: &["ghost"],
    },
    Case {
        name: "zero concurrency",
        breaks: |t| t.replace("[settings]\n", "[settings]\nconcurrency = 0\n"),
        says: &["concurrency"],
    },
    Case {
        name: "wrong value type",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nretired = \"yes\"",
            )
        },
        says: &["retired"],
    },
    Case {
        name: "a mirror that is no backend",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nmirrors = [\"dr\"]",
            )
        },
        says: &["dr", "mirrors"],
    },
    Case {
        name: "a mirror that is the primary",
        breaks: |t| {
            t.replace(
                "strategy = \"in-place\"",
                "strategy = \"in-place\"\nmirrors = [\"local\"]",
            )
        },
        says: &["primary", "mirrors"],
    },
];

fn regex_url(t: &str, to: &str) -> String {
    let start = t.find("url = \"").unwrap() + 7;
    let end = start + t[start..].find('"').unwrap();
    format!("{}{to}{}", &t[..start], &t[end..])
}

fn strip_tenant(t: &str) -> String {
    t.lines()
        .filter(|l| !l.starts_with("tenant = "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inventories_exit_2_name_the_problem_and_change_nothing() {
    let w = World::new(1).await;
    let valid = format!("{}\n{}", w.header(), good());
    w.inventory_raw(&valid);
    let ok = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    ok.expect_code(0);

    let tenant = w.tenants[0].id.clone();
    let clients_before = w.platform_clients(&tenant).await.len();
    for case in CASES {
        let broken = (case.breaks)(valid.clone());
        assert_ne!(
            broken, valid,
            "{}: the case did not change the inventory",
            case.name
        );
        w.inventory_raw(&broken);
        for cmd in ["plan", "apply"] {
            let r = w.rekey(&[cmd, "-c", "inventory.toml"]).await;
            assert_eq!(
                r.code,
                Some(2),
                "{} ({cmd}): exit {:?}\n{}",
                case.name,
                r.code,
                r.stderr
            );
            assert!(
                r.stderr.contains("inventory.toml"),
                "{}: the error names the file:\n{}",
                case.name,
                r.stderr
            );
            for word in case.says {
                assert!(
                    r.stderr.contains(word),
                    "{} ({cmd}): error lacks {word:?}:\n{}",
                    case.name,
                    r.stderr
                );
            }
            assert!(
                !r.stderr.contains("hunter2hunter2"),
                "{}: secret echoed",
                case.name
            );
            assert!(
                r.stdout.is_empty(),
                "{}: printed a report:\n{}",
                case.name,
                r.stdout
            );
        }
    }
    assert!(CASES.len() >= 15);
    // Nothing reached the platform or the store.
    assert_eq!(w.platform_clients(&tenant).await.len(), clients_before);
    assert!(w.records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn many_problems_are_reported_at_once() {
    let w = World::new(1).await;
    let text = format!(
        "{}\n[[slots]]\nname = \"a\"\nprovider = \"nope\"\n\n[[slots]]\nname = \"b\"\nprovider = \"p0\"\nmax_age = \"x\"\n\n[[slots]]\nname = \"c\"\nprovider = \"p0\"\ncolour = \"red\"\n",
        w.header()
    );
    w.inventory_raw(&text);
    let r = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    r.expect_code(2);
    for word in ["nope", "max_age", "colour"] {
        assert!(r.stderr.contains(word), "missing {word}:\n{}", r.stderr);
    }
    assert!(r.stderr.contains("3 problems"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bootstrap_secret_is_a_config_error_before_any_change() {
    let w = World::new(1).await;
    let text = format!("{}\n{}", w.header(), good()).replacen(
        "client_secret = { file = \"boot-0.secret\" }",
        "client_secret = { env = \"REKEY_TEST_UNSET_SECRET\" }",
        1,
    );
    w.inventory_raw(&text);
    let r = w.rekey(&["apply", "-c", "inventory.toml"]).await;
    r.expect_code(2);
    assert!(r.stderr.contains("REKEY_TEST_UNSET_SECRET"), "{}", r.stderr);
    assert!(w.records().await.is_empty());
    let missing = w.rekey(&["plan", "-c", "no-such-file.toml"]).await;
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("no-such-file.toml"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn help_describes_every_command() {
    let w = World::new(0).await;
    let r = w.rekey(&["--help"]).await;
    r.expect_code(0);
    for cmd in [
        "plan", "apply", "status", "verify", "check", "run", "demo", "emulator", "get", "keygen",
    ] {
        assert!(r.stdout.contains(cmd), "--help lacks {cmd}:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("Exit codes"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_every_backend_and_provider() {
    let w = World::new(1).await;
    let valid = format!("{}\n{}", w.header(), good());
    w.inventory_raw(&valid);
    let r = w
        .rekey(&["check", "-c", "inventory.toml", "--output", "json"])
        .await;
    r.expect_code(0);
    let rows = r.rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|x| x["ok"] == true), "{rows:?}");

    // A bootstrap secret the platform refuses: exit 1, the provider named.
    std::fs::write(w.path().join("wrong.secret"), "not-the-secret").unwrap();
    // rekey refuses a secret file others can read.
    std::fs::set_permissions(
        w.path().join("wrong.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    w.inventory_raw(&valid.replacen("boot-0.secret", "wrong.secret", 1));
    let r = w.rekey(&["check", "-c", "inventory.toml"]).await;
    r.expect_code(1);
    assert!(
        r.stdout.contains("provider") && r.stdout.contains("p0") && r.stdout.contains("FAILED"),
        "{}",
        r.stdout
    );

    // A backend that cannot be reached (its plugin is missing): exit 4.
    let with_plugin =
        format!("{valid}\n[backends.corp]\ntype = \"exec\"\ncommand = [\"./no-such-plugin\"]\n");
    w.inventory_raw(&with_plugin);
    let r = w.rekey(&["check", "-c", "inventory.toml"]).await;
    r.expect_code(4);
    assert!(
        r.stdout.contains("corp") && r.stdout.contains("cannot start"),
        "{}",
        r.stdout
    );
    assert!(w.records().await.is_empty(), "check changed nothing");
}
