//! The inventory's value types that the checking toolkit and every provider/backend module
//! share: strategies, references to secrets, and located problems. They sit below
//! [`crate::check`] so that the modules the inventory parser calls never import the parser.

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// New client next to the old one; old one deleted after grace. Zero downtime. Default.
    Alternate,
    /// New secret for the same client; consumers of the old secret fail until they reload.
    InPlace,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Alternate => "alternate",
            Strategy::InPlace => "in-place",
        })
    }
}

/// When a draining client may be deleted once its grace is over (docs/src/inventory.md,
/// "Draining"): `drain`, `drain_quiet`, `drain_timeout` and `on_drain_timeout` of a slot or of
/// `[defaults]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPolicy {
    pub mode: DrainMode,
    /// No token request with the client for this long before it is deleted.
    pub quiet: std::time::Duration,
    /// How long after the grace a client still in use is held before `on_timeout` applies.
    pub timeout: std::time::Duration,
    pub on_timeout: OnDrainTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainMode {
    /// Deleted when the grace is over and the platform shows no recent use. Default.
    UntilUnused,
    /// Deleted when the grace is over, whatever its use (rekey before usage-aware draining).
    GraceOnly,
}

/// What happens to a client still in use `drain_timeout` after its grace ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrainTimeout {
    /// Held on, and reported as overdue. Default: a deleted client cannot be brought back.
    Keep,
    /// Deleted anyway; its consumers fail until they read the new pair.
    Delete,
}

impl Default for DrainPolicy {
    fn default() -> Self {
        DrainPolicy {
            mode: DrainMode::UntilUnused,
            // Twice the longest token lifetime rekey knows of (an hour), so a consumer that
            // still holds a cached token is seen when it comes back for the next one.
            quiet: std::time::Duration::from_secs(2 * 3600),
            timeout: std::time::Duration::from_secs(7 * 86_400),
            on_timeout: OnDrainTimeout::Keep,
        }
    }
}

impl fmt::Display for DrainMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainMode::UntilUnused => "until-unused",
            DrainMode::GraceOnly => "grace-only",
        })
    }
}

impl fmt::Display for OnDrainTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDrainTimeout::Keep => "keep",
            OnDrainTimeout::Delete => "delete",
        })
    }
}

/// Where a value comes from. Secrets are only ever given this way, never as literals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueRef {
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "path" }` (relative to the inventory's directory); trailing newline trimmed.
    File(PathBuf),
    /// A literal: allowed for non-secret values only (a client id).
    Literal(String),
}

impl ValueRef {
    /// Reads the value. The error names the reference, never the value. A file that users other
    /// than its owner can read or write is refused (it holds a credential, or sits next to one).
    pub fn resolve(&self) -> Result<Secret> {
        if let ValueRef::File(path) = self {
            crate::harden::check_private_file(path, "secret file")?;
        }
        self.resolve_any_mode()
    }

    /// [`resolve`](Self::resolve) without the file-mode check, for files whose mode the platform
    /// sets and the operator cannot tighten (Kubernetes' projected service-account token).
    pub fn resolve_any_mode(&self) -> Result<Secret> {
        match self {
            ValueRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(Error::config(format!(
                    "environment variable {name} is not set"
                ))),
            },
            ValueRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read {}", path.display()))
                        .with_source(e)
                })?;
                Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
            }
            ValueRef::Literal(v) => Ok(Secret::new(v.clone())),
        }
    }
}

impl fmt::Display for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Env(n) => write!(f, "env {n}"),
            ValueRef::File(p) => write!(f, "file {}", p.display()),
            ValueRef::Literal(_) => f.write_str("literal"),
        }
    }
}

/// A client id and secret given by reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRef {
    pub client_id: ValueRef,
    pub client_secret: ValueRef,
}

/// One problem in an inventory, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key, e.g. `slots[3].provider` or `providers.eu-prod.environment`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// Every problem found in an inventory.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the inventory has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigErrors> for Error {
    fn from(e: ConfigErrors) -> Self {
        Error::config(e.to_string())
    }
}
