//! `rekey exec -c FILE SLOT -- COMMAND...`: runs a command with the slot's current pair in its
//! environment, as the platforms' own docs run their examples (`CLIENT_ID=... CLIENT_SECRET=...
//! python script.py`). No file is written and no shell is involved: the pair goes from the
//! backend into the child's environment only, and the command's exit code is rekey's
//! (docs/src/consumers.md, "rekey exec").

use crate::cli::ExecArgs;
use crate::error::{Error, Result};

/// The variables the pair goes into: `--id-var`/`--secret-var`, else `PREFIX` + `CLIENT_ID` /
/// `CLIENT_SECRET` (`--env-prefix US1_`: the Taegis SDK's per-environment names).
pub fn variable_names(args: &ExecArgs) -> Result<(String, String)> {
    let prefix = args.env_prefix.as_deref().unwrap_or("");
    let id = args
        .id_var
        .clone()
        .unwrap_or_else(|| format!("{prefix}CLIENT_ID"));
    let secret = args
        .secret_var
        .clone()
        .unwrap_or_else(|| format!("{prefix}CLIENT_SECRET"));
    for name in [&id, &secret] {
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(Error::config(format!(
                "{name:?} is not an environment variable name: use letters, digits and _, not starting with a digit"
            )));
        }
    }
    if id == secret {
        return Err(Error::config(
            "the CLIENT_ID and CLIENT_SECRET variables must have different names",
        ));
    }
    Ok((id, secret))
}

pub async fn run(args: &ExecArgs) -> Result<u8> {
    let (id_var, secret_var) = variable_names(args)?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("no command given: rekey exec -c FILE SLOT -- COMMAND..."))?;
    let (slot, current) =
        crate::app::commands::current_credential(&args.config, &args.slot).await?;
    tracing::info!(slot = %slot.name, generation = current.generation, client_id = %current.client_id, program = %program, "running the command with the slot's current pair");
    let status = tokio::process::Command::new(program)
        .args(rest)
        .env(&id_var, &current.client_id)
        .env(&secret_var, current.secret.expose())
        .status()
        .await
        .map_err(|e| Error::config(format!("cannot run {program:?}")).with_source(e))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        // As a shell reports a command killed by a signal.
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        (None, None) => crate::error::exit::ATTENTION,
    })
}
