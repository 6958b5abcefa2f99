//! The one consistency check every end-to-end test ends with: nothing lost, nothing orphaned.

use super::World;
use super::cisco::CiscoOrg;
use rekey::backend::Backend;
use std::collections::BTreeSet;

/// Over the slots stored in `backend`:
/// - every slot of `expect_slots` has a record;
/// - every record has a current pair that gets a token at its platform (a Cisco token exchange
///   for the providers `c<i>` of `orgs`, a Taegis one otherwise), and no operation in flight;
/// - every rekey-named client at the platform (each Taegis tenant of `w`, each org of `orgs`) is
///   one a record knows (current, pending or draining).
pub async fn assert_consistent(
    w: &World,
    orgs: &[CiscoOrg],
    backend: &dyn Backend,
    expect_slots: &[&str],
) {
    // A provider's hourly-budget entry lives beside the slots and holds no credential.
    let records: Vec<_> = w
        .records_in(backend)
        .await
        .into_iter()
        .filter(|r| r.budget.is_none())
        .collect();
    let names: BTreeSet<&str> = records.iter().map(|r| r.slot.as_str()).collect();
    for s in expect_slots {
        assert!(names.contains(s), "slot {s} has no record; have {names:?}");
    }
    let cisco_providers: BTreeSet<String> = (0..orgs.len()).map(|i| format!("c{i}")).collect();
    let mut referenced = BTreeSet::new();
    for r in &records {
        let cur = r
            .current
            .as_ref()
            .unwrap_or_else(|| panic!("slot {} has no current pair: {r:?}", r.slot));
        let works = if cisco_providers.contains(&r.provider) {
            w.cisco_token_ok(&cur.client_id, cur.secret.expose()).await
        } else {
            w.token_ok(&cur.client_id, cur.secret.expose()).await
        };
        assert!(
            works,
            "slot {}: current pair g{} does not work",
            r.slot, cur.generation
        );
        assert!(
            r.op.is_none(),
            "slot {} still has an operation in flight",
            r.slot
        );
        for c in r
            .current
            .iter()
            .chain(r.pending.iter())
            .chain(r.draining.iter().map(|d| &d.credential))
        {
            referenced.insert(c.client_id.clone());
        }
    }
    let places = w
        .tenants
        .iter()
        .map(|t| format!("tenant {}", t.id))
        .chain(orgs.iter().map(|o| format!("org {}", o.id)));
    for place in places {
        let id = place.split_once(' ').unwrap().1;
        for (name, client_id, _) in w.platform_clients(id).await {
            if name.starts_with("rekey-") {
                assert!(
                    referenced.contains(&client_id),
                    "orphaned client {name} ({client_id}) in {place}"
                );
            }
        }
    }
}
