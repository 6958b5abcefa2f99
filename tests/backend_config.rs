//! Each backend's `[backends.NAME]` table as the inventory parser reads it: defaults, every
//! option, and errors that are located and never echo a secret. (Kept out of the backend
//! folders, which import config's toolkit and never its parser.)

use rekey::backend::vault::VaultAuth;

fn parse_vault(backend: &str) -> std::result::Result<rekey::config::Inventory, String> {
    let text = format!(
        "[providers.p]\ntype = \"taegis\"\nenvironment = \"us1\"\n\
         bootstrap = {{ client_id = {{ env = \"ID\" }}, client_secret = {{ env = \"S\" }} }}\n\n\
         [backends.v]\ntype = \"vault\"\n{backend}\n[[slots]]\nname = \"s\"\nprovider = \"p\"\ntenant = \"1\"\n"
    );
    rekey::config::parse(&text, std::path::Path::new("/etc/rekey/inv.toml"))
        .map_err(|e| e.to_string())
}

#[test]
fn vault_config_defaults_and_every_auth_method() {
    let inv = parse_vault(
        "address = \"https://vault.example:8200\"\nauth = { method = \"kubernetes\", role = \"rekey\" }\n",
    )
    .unwrap();
    let rekey::config::BackendConfig::Vault(v) = &inv.backends["v"] else {
        panic!("vault")
    };
    assert_eq!(
        (v.mount.as_str(), v.path_prefix.as_str()),
        ("secret", "rekey/")
    );
    assert_eq!(
        v.auth,
        VaultAuth::Kubernetes {
            role: "rekey".into(),
            jwt_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            mount: "kubernetes".into()
        }
    );
    let inv = parse_vault(
        "address = \"http://127.0.0.1:8200\"\nmount = \"kv\"\npath_prefix = \"\"\nnamespace = \"team/a\"\n\
         ca_cert = \"ca.pem\"\ntimeout = \"5s\"\n\
         auth = { method = \"approle\", role_id = \"r-1\", secret_id = { file = \"sid\" } }\n",
    )
    .unwrap();
    let rekey::config::BackendConfig::Vault(v) = &inv.backends["v"] else {
        panic!("vault")
    };
    assert_eq!(
        v.ca_cert.as_deref(),
        Some(std::path::Path::new("/etc/rekey/ca.pem"))
    );
    assert_eq!(v.namespace.as_deref(), Some("team/a"));
    assert!(matches!(&v.auth, VaultAuth::AppRole { mount, .. } if mount == "approle"));
    parse_vault("address = \"https://v:8200\"\nauth = { method = \"token\", token = { env = \"VAULT_TOKEN\" } }\n")
        .unwrap();
}

#[test]
fn vault_config_errors_are_located_and_never_echo_secrets() {
    let e = parse_vault(
        "address = \"http://vault.example:8200\"\nauth = { method = \"token\", token = \"s.hunter2\" }\n",
    )
    .unwrap_err();
    assert!(e.contains("backends.v.address"), "{e}");
    assert!(e.contains("backends.v.auth.token"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = parse_vault(
        "address = \"https://v\"\npath_prefix = \"rekey\"\nauth = { method = \"ldap\" }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("path_prefix") && e.contains("unknown auth method"),
        "{e}"
    );
    let e = parse_vault("address = \"https://v\"\n").unwrap_err();
    assert!(e.contains("auth"), "{e}");
}

fn parse_aws(backend: &str) -> std::result::Result<rekey::config::Inventory, String> {
    let text = format!(
        "[providers.p]\ntype = \"taegis\"\nenvironment = \"us1\"\nbootstrap = {{ client_id = {{ env = \"ID\" }}, client_secret = {{ env = \"SECRET\" }} }}\n\n[backends.a]\ntype = \"aws\"\n{backend}\n[[slots]]\nname = \"s1\"\nprovider = \"p\"\ntenant = \"1\"\n"
    );
    rekey::config::parse(&text, std::path::Path::new("inv.toml")).map_err(|e| e.to_string())
}

#[test]
fn aws_config_defaults_and_every_option() {
    let inv = parse_aws("").unwrap();
    let rekey::config::BackendConfig::Aws(c) = &inv.backends["a"] else {
        panic!("aws backend expected");
    };
    assert_eq!(
        (
            c.prefix.as_str(),
            c.recovery_window_days,
            c.region.as_deref()
        ),
        ("rekey/", 7, None)
    );
    let inv = parse_aws(
        "region = \"eu-west-1\"\nendpoint_url = \"https://vpce.example\"\nprefix = \"team/x/\"\nkms_key_id = \"alias/rekey\"\nrecovery_window_days = 30\ntimeout = \"10s\"\n",
    )
    .unwrap();
    let rekey::config::BackendConfig::Aws(c) = &inv.backends["a"] else {
        panic!("aws backend expected");
    };
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.kms_key_id.as_deref(), Some("alias/rekey"));
    assert_eq!(c.recovery_window_days, 30);
    assert_eq!(c.timeout, std::time::Duration::from_secs(10));
    assert!(!format!("{c:?}").contains("alias/rekey"));
    assert!(parse_aws("endpoint_url = \"http://127.0.0.1:4566\"").is_ok());
}

#[test]
fn aws_config_errors() {
    for (bad, says) in [
        ("endpoint_url = \"http://aws.example\"", "loopback"),
        ("recovery_window_days = 3", "at least 7"),
        ("recovery_window_days = 31", "at most 30"),
        ("prefix = \"a b\"", "not a valid secret name prefix"),
        ("region = \"EU WEST\"", "not an AWS region"),
        ("access_key = \"AKIA\"", "access_key"),
    ] {
        let e = parse_aws(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}
