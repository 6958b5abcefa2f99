//! Which slots a run looks at: the selected inventory slots, then the entries rekey owns in a
//! backend that the inventory no longer lists (orphans); and the guard against retiring many
//! slots at once by mistake.

use super::names::{glob_match, unmatched};
use super::{Engine, Target, lease_holder_alive};
use crate::error::{Error, Result};
use crate::plan::{self, Step};
use crate::record::Lease;
use std::collections::{BTreeMap, BTreeSet};

impl Engine {
    /// The slots this run looks at: selected inventory slots, then entries rekey owns in a
    /// backend that the inventory no longer lists (sorted by name).
    pub async fn targets(&self) -> Result<Vec<Target>> {
        let mut targets: Vec<Target> = self
            .inventory
            .slots
            .iter()
            .filter(|s| self.selected(&s.name))
            .map(|s| Target {
                name: s.name.clone(),
                config: Some(s.clone()),
                backend: s.backend.clone(),
            })
            .collect();
        let known: BTreeSet<String> = self
            .inventory
            .slots
            .iter()
            .map(|s| s.name.clone())
            .collect();
        // Backends that only ever hold mirror copies have no orphans of their own.
        let primaries: BTreeSet<&str> = self
            .inventory
            .slots
            .iter()
            .map(|s| s.backend.as_str())
            .collect();
        let mirror_only: BTreeSet<&str> = self
            .inventory
            .slots
            .iter()
            .flat_map(|s| s.mirrors.iter().map(String::as_str))
            .filter(|m| !primaries.contains(m))
            .collect();
        let mut stored = BTreeSet::new();
        for (bname, backend) in &self.backends {
            if mirror_only.contains(bname.as_str()) {
                continue;
            }
            let listed = backend
                .list(&known)
                .await
                .map_err(|e| e.context(format!("backend {bname}: listing slots")))?;
            if !self.options.only.is_empty() {
                stored.extend(listed.iter().cloned());
            }
            for name in listed {
                // A provider's hourly-budget entry lives beside the slots and is not one.
                if known.contains(&name)
                    || crate::provider::budget::is_budget_entry(&name)
                    || !self.selected(&name)
                {
                    continue;
                }
                // A mirror's copy of a slot whose primary lives elsewhere is not an orphan.
                if let Ok(Some(v)) = backend.read(&name).await
                    && v.record.mirror_of.is_some()
                {
                    continue;
                }
                targets.push(Target {
                    name,
                    config: None,
                    backend: bname.clone(),
                });
            }
        }
        let names = known.iter().chain(&stored).map(String::as_str);
        if let Some(sel) = unmatched(&self.options.only, names) {
            return Err(Error::config(format!(
                "--only {sel:?} matches no slot of the inventory or its backends, so the run would do nothing; check the name (`rekey status -c FILE` lists every slot)"
            )));
        }
        Ok(targets)
    }

    pub(super) fn selected(&self, name: &str) -> bool {
        (self.options.only.is_empty() || self.options.only.iter().any(|sel| glob_match(sel, name)))
            && self.options.shard.is_none_or(|s| s.contains(name))
    }

    /// Refuses (exit 2, before any change) a run that would start retiring more of a backend's
    /// slots than `settings.max_retire` or `settings.max_retire_percent` allow, unless
    /// `--allow-mass-retire` was given. A mistaken inventory (a slot renamed, a file truncated)
    /// must not take many live clients with it, even after their grace.
    pub(super) async fn check_mass_retire(&self, targets: &[Target]) -> Result<()> {
        if self.options.allow_mass_retire {
            return Ok(());
        }
        let settings = &self.inventory.settings;
        let host = self.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        let mut starting: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in targets {
            let candidate = match &t.config {
                None => settings.prune,
                Some(c) => c.retired,
            };
            if !candidate {
                continue;
            }
            let stored = self.backends[&t.backend]
                .read(&t.name)
                .await
                .map_err(|e| e.context(format!("slot {}", t.name)))?;
            let Some(v) = stored else { continue };
            let decision = plan::decide(
                t.config.as_deref(),
                Some(&v.record),
                settings.prune,
                &self.context(&alive),
            );
            if v.record.retiring.is_none() && decision.step == Some(Step::Retire) {
                starting.entry(&t.backend).or_default().push(&t.name);
            }
        }
        for (backend, slots) in starting {
            let held = self.backends[backend]
                .list(&BTreeSet::new())
                .await
                .map_err(|e| e.context(format!("backend {backend}: listing slots")))?
                .len()
                .max(slots.len());
            let n = slots.len();
            let over_count = n > settings.max_retire;
            let over_share = n > 1 && n * 100 > held * settings.max_retire_percent as usize;
            if over_count || over_share {
                let mut names = slots
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if n > 20 {
                    names.push_str(&format!(" and {} more", n - 20));
                }
                return Err(Error::config(format!(
                    "refusing to start retiring {n} of the {held} slots backend {backend} holds ({names}): more than max_retire = {} or max_retire_percent = {} allow. Nothing was changed. If the inventory is right, run again with --allow-mass-retire; if not (a slot renamed or left out by mistake), fix it",
                    settings.max_retire, settings.max_retire_percent
                )));
            }
        }
        Ok(())
    }
}
