//! Who made a change, for the audit trail's `actor` (docs/src/operating.md, "Audit trail").
//!
//! In a Kubernetes pod the answer is the service account, the pod and its namespace, read from
//! the service-account token's claims (`sub` = `system:serviceaccount:NS:NAME`, and the
//! `kubernetes.io` claim's namespace and pod) and from the downward-API variables `POD_NAME`,
//! `POD_NAMESPACE` and `POD_SERVICE_ACCOUNT` (deploy/base/cronjob.yaml sets them); the token
//! wins where both say. Elsewhere it is the user (`$USER`, `$LOGNAME`, else the passwd entry
//! of the process's uid) at the host. The process id ends both.

use base64::Engine as _;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where Kubernetes mounts a pod's service-account token. `REKEY_SERVICE_ACCOUNT_TOKEN` names
/// another file (the tests' fake token; a projected token mounted elsewhere).
pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The actor of every change this process makes (computed once: the token is read once).
pub fn actor() -> String {
    static ACTOR: OnceLock<String> = OnceLock::new();
    ACTOR
        .get_or_init(|| {
            let who = kubernetes(&Pod::from_env()).unwrap_or_else(user_at_host);
            format!("{who} pid {}", std::process::id())
        })
        .clone()
}

/// What a pod knows about itself; every field may be missing.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pod {
    service_account: Option<String>,
    namespace: Option<String>,
    pod: Option<String>,
}

impl Pod {
    /// The token's claims, filled in from the downward-API variables.
    fn from_env() -> Pod {
        let path = std::env::var_os("REKEY_SERVICE_ACCOUNT_TOKEN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(TOKEN_PATH));
        let claims = std::fs::read_to_string(&path)
            .ok()
            .map(|t| claims(t.trim()))
            .unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let namespace = claims.namespace.or_else(|| env("POD_NAMESPACE"));
        let service_account = claims.service_account.or_else(|| {
            let (ns, sa) = (namespace.as_deref()?, env("POD_SERVICE_ACCOUNT")?);
            Some(format!("system:serviceaccount:{ns}:{sa}"))
        });
        Pod {
            service_account,
            namespace,
            pod: claims.pod.or_else(|| env("POD_NAME")),
        }
    }
}

/// `system:serviceaccount:NS:NAME (pod P, namespace NS)`, or `None` outside a pod.
fn kubernetes(p: &Pod) -> Option<String> {
    if p == &Pod::default() {
        return None;
    }
    let mut where_ = Vec::new();
    if let Some(pod) = &p.pod {
        where_.push(format!("pod {pod}"));
    }
    if let Some(ns) = &p.namespace {
        where_.push(format!("namespace {ns}"));
    }
    let who = p.service_account.as_deref().unwrap_or("unknown");
    Some(if where_.is_empty() {
        who.to_string()
    } else {
        format!("{who} ({})", where_.join(", "))
    })
}

/// The claims of a service-account token. The signature is NOT verified, on purpose: the
/// actor is attribution in rekey's own audit trail, never an authorization decision, and rekey
/// has neither the cluster's signing keys nor a reason to call the API server to check them.
/// A token that does not decode (not a JWT, bad base64 or JSON) gives nothing, with a debug
/// line that never shows the token: it is a bearer credential.
fn claims(token: &str) -> Pod {
    let decoded = token
        .split('.')
        .nth(1)
        .ok_or("not a JWT")
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .map_err(|_| "its payload is not base64url")
        })
        .and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b).map_err(|_| "its payload is not JSON")
        });
    let v = match decoded {
        Ok(v) => v,
        Err(why) => {
            tracing::debug!(
                why,
                "the service-account token is ignored for the audit actor"
            );
            return Pod::default();
        }
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let k8s = &v["kubernetes.io"];
    Pod {
        service_account: text(&v["sub"]).filter(|s| s.starts_with("system:serviceaccount:")),
        namespace: text(&k8s["namespace"]),
        pod: text(&k8s["pod"]["name"]),
    }
}

/// `user@host`: the login name from the environment, else the passwd entry of the uid.
fn user_at_host() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(passwd_name)
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// The passwd entry's name for this process's uid (containers often set no `$USER`).
fn passwd_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes only into `pwd` and `buf` (whose length it is given) and sets
    // `out` to `&pwd` or null; the name is copied out before `buf` goes away.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn a_bound_token_names_the_service_account_pod_and_namespace() {
        let p = claims(&jwt(
            r#"{"sub":"system:serviceaccount:rekey:rekey","kubernetes.io":{"namespace":"rekey","pod":{"name":"rekey-abc","uid":"1"},"serviceaccount":{"name":"rekey"}}}"#,
        ));
        assert_eq!(
            kubernetes(&p).as_deref(),
            Some("system:serviceaccount:rekey:rekey (pod rekey-abc, namespace rekey)")
        );
    }

    #[test]
    fn a_malformed_token_gives_nothing() {
        for t in ["", "abc", "a.%%%.c", &jwt("not json"), &jwt("[1]")] {
            let p = claims(t);
            assert_eq!(p.service_account, None, "{t}");
            assert_eq!(p.pod, None, "{t}");
        }
        assert_eq!(kubernetes(&Pod::default()), None);
    }

    #[test]
    fn outside_a_pod_the_user_is_named() {
        assert!(user_at_host().contains('@'));
        assert!(passwd_name().is_some_and(|n| !n.is_empty()));
    }
}
