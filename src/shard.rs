//! Sharding the inventory across processes (`--shard INDEX/COUNT`, a Kubernetes Indexed Job).
//!
//! The rule, fixed because separate processes (and future versions) must agree on it: a slot
//! named `name` belongs to shard `u64::from_be_bytes(sha256(name)[0..8]) % COUNT`. It depends
//! only on the name, so entries that left the inventory (orphans in a backend) land in the same
//! shard as when they were in it, and each slot has exactly one shard whatever the order of the
//! inventory. Never `DefaultHasher`: its output may change between Rust releases.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Kubernetes sets this in each pod of an Indexed Job (0..completions-1).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The shard count; Kubernetes does not set it, so the manifest must (= `completions`).
pub const COUNT_ENV: &str = "REKEY_SHARD_COUNT";

/// One shard of `count`: this process handles the slots whose [`shard_of`] is `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// The shard (0..count) a slot name belongs to. `count` must be at least 1.
pub fn shard_of(name: &str, count: u64) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

impl Shard {
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        if count == 0 {
            return Err(Error::config("shard count must be at least 1"));
        }
        if index >= count {
            return Err(Error::config(format!(
                "shard index {index} is out of range for {count} shards (0..{})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard handles the slot `name`.
    pub fn contains(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }

    /// The shard from `JOB_COMPLETION_INDEX` and `REKEY_SHARD_COUNT`, given a variable lookup.
    /// Neither set: no sharding. Only one set: an error (half a configuration would make
    /// every pod of an Indexed Job do all the work, or one pod guess its index).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let index = get(INDEX_ENV).filter(|v| !v.trim().is_empty());
        let count = get(COUNT_ENV).filter(|v| !v.trim().is_empty());
        match (index, count) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::config(format!(
                "{INDEX_ENV} is set but {COUNT_ENV} is not: set {COUNT_ENV} to the Job's completions (or pass --shard INDEX/COUNT)"
            ))),
            (None, Some(_)) => Err(Error::config(format!(
                "{COUNT_ENV} is set but {INDEX_ENV} is not: run as an Indexed Job (or pass --shard INDEX/COUNT)"
            ))),
            (Some(i), Some(c)) => format!("{}/{}", i.trim(), c.trim())
                .parse()
                .map(Some)
                .map_err(|e: Error| e.context(format!("from {INDEX_ENV} and {COUNT_ENV}"))),
        }
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::config(format!("bad shard {s:?}: expected INDEX/COUNT, e.g. 0/3"));
        let (i, c) = s.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse::<u64>().map_err(|_| bad())?;
        let count = c.trim().parse::<u64>().map_err(|_| bad())?;
        Shard::new(index, count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn shard_of_is_the_documented_hash() {
        // sha256("alpha") = 8ed3f6ad685b959e...; first 8 bytes big-endian.
        let h = u64::from_be_bytes([0x8e, 0xd3, 0xf6, 0xad, 0x68, 0x5b, 0x95, 0x9e]);
        assert_eq!(
            hex::encode(&Sha256::digest(b"alpha")[..8]),
            "8ed3f6ad685b959e"
        );
        for n in 1..10 {
            assert_eq!(shard_of("alpha", n), h % n);
        }
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn every_name_has_exactly_one_shard_and_shards_are_balanced() {
        let names: Vec<String> = (0..3000).map(|i| format!("slot-{i}")).collect();
        let mut per = BTreeMap::new();
        for n in &names {
            let owners: Vec<u64> = (0..3)
                .filter(|&i| Shard::new(i, 3).unwrap().contains(n))
                .collect();
            assert_eq!(owners.len(), 1, "{n}: {owners:?}");
            *per.entry(owners[0]).or_insert(0) += 1;
        }
        for (shard, count) in per {
            assert!((800..1200).contains(&count), "shard {shard}: {count}");
        }
    }

    #[test]
    fn parses_index_over_count() {
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            " 0 / 1 ".parse::<Shard>().unwrap(),
            Shard { index: 0, count: 1 }
        );
        for bad in ["3/2", "2/2", "x/y", "0/0", "1", "", "-1/3", "1/3/4", "1/"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn from_env_needs_both_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert_eq!(
            Shard::from_env(env(&[(INDEX_ENV, "2"), (COUNT_ENV, "3")])).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_env(env(&[(INDEX_ENV, "2")])).is_err());
        assert!(Shard::from_env(env(&[(COUNT_ENV, "3")])).is_err());
        assert!(Shard::from_env(env(&[(INDEX_ENV, "3"), (COUNT_ENV, "3")])).is_err());
        assert!(Shard::from_env(env(&[(INDEX_ENV, "a"), (COUNT_ENV, "3")])).is_err());
    }

    #[test]
    fn the_cli_takes_shard_on_run_commands() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        for cmd in ["plan", "apply", "status", "verify", "run"] {
            let cli =
                Cli::try_parse_from(["rekey", cmd, "-c", "i.toml", "--shard", "2/5"]).unwrap();
            let args = match cli.command {
                Command::Plan(a) | Command::Apply(a) | Command::Status(a) | Command::Verify(a) => a,
                Command::Run(s) => s.run,
                other => panic!("{other:?}"),
            };
            assert_eq!(args.shard, Some(Shard { index: 2, count: 5 }), "{cmd}");
        }
        for bad in ["3/2", "x/y", "0/0"] {
            let e = Cli::try_parse_from(["rekey", "apply", "-c", "i.toml", "--shard", bad])
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        let cli = Cli::try_parse_from(["rekey", "apply", "-c", "i.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Apply(a) if a.shard.is_none()));
    }
}
