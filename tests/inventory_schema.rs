//! The inventory's JSON Schema for editors (docs/schema/inventory.schema.json, made by
//! scripts/inventory_schema.py): it is up to date; every example inventory validates against it
//! (with Python's `jsonschema`, as an editor's validator would); and each bad inventory it can
//! express fails it, while rekey's own checks refuse the same file (exit 2).

mod common;
use common::python::venv_python;
use common::{World, cisco_slot, slots};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `valid FILE` or `invalid FILE: ...` per file.
fn validate(files: &[PathBuf]) -> Vec<String> {
    let out = std::process::Command::new(venv_python())
        .arg(root().join("tests/python/validate_inventory.py"))
        .arg(root().join("docs/schema/inventory.schema.json"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_checked_in_schema_is_what_the_generator_makes() {
    let out = std::process::Command::new(venv_python())
        .arg(root().join("scripts/inventory_schema.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_inventory_validates_and_rekey_accepts_it() {
    let mut files: Vec<PathBuf> = [
        "examples/inventory.toml",
        "examples/tour/inventory.toml",
        "fuzz/seeds/inventory/minimal.toml",
        "fuzz/seeds/inventory/example.toml",
        "fuzz/seeds/inventory/bootstrap-slot.toml",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    // A test world's inventory with both platforms, drain keys and every slot key.
    let cw = World::new_with(1, 1).await;
    cw.inventory(&format!(
        "{}\ndrain = \"until-unused\"\ndrain_quiet = \"3h\"\non_drain_timeout = \"keep\"\nmax_age = \"7d\"\ngrace = \"1h\"\n\n{}",
        slots(&[("alpha", "in-place")]),
        cisco_slot("beta", "c0")
    ));
    let world_inventory = cw.path().join("inventory.toml");
    cw.rekey(&["plan", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    files.push(world_inventory);
    for line in validate(&files) {
        assert!(line.starts_with("valid "), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inventories_the_schema_can_express_fail_it_and_rekey_refuses_them() {
    let w = World::new(1).await;
    let base = format!("{}\n{}", w.header(), slots(&[("alpha", "alternate")]));
    let cases: &[(&str, String)] = &[
        (
            "unknown top-level table",
            format!("{base}\n[setting]\nprune = true\n"),
        ),
        ("unknown slot key", format!("{base}grase = \"1h\"\n")),
        (
            "unknown strategy",
            base.replace("strategy = \"alternate\"", "strategy = \"sideways\""),
        ),
        ("duration as a number", format!("{base}max_age = 30\n")),
        (
            "unknown drain policy",
            format!("{base}drain = \"whenever\"\n"),
        ),
        (
            "slot without a name",
            format!("{base}\n[[slots]]\nprovider = \"p0\"\n"),
        ),
        (
            "bad slot name",
            base.replace("name = \"alpha\"", "name = \"Alpha Beta\""),
        ),
        (
            "literal secret",
            base.replace(
                "client_secret = { file = \"boot-0.secret\" }",
                "client_secret = \"hunter2\"",
            ),
        ),
        (
            "env and file at once",
            base.replace(
                "client_secret = { file = \"boot-0.secret\" }",
                "client_secret = { env = \"X\", file = \"boot-0.secret\" }",
            ),
        ),
        (
            "unknown backend type",
            base.replace("type = \"file\"", "type = \"floppy\""),
        ),
        (
            "unknown provider key",
            base.replace("rate_limit = 1000", "rate_limit = 1000\nratelimit = 5"),
        ),
    ];
    let mut files = Vec::new();
    for (i, (what, text)) in cases.iter().enumerate() {
        assert_ne!(text, &base, "{what}: the case changed nothing");
        let name = format!("bad-{i}.toml");
        std::fs::write(w.path().join(&name), text).unwrap();
        let r = w.rekey(&["plan", "-c", &name]).await;
        r.expect_code(2);
        files.push(w.path().join(&name));
    }
    for (line, (what, _)) in validate(&files).iter().zip(cases) {
        assert!(
            line.starts_with("invalid "),
            "{what}: the schema accepted it: {line}"
        );
    }
}
