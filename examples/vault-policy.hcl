# Least privilege for rekey's `vault` backend (KV v2 mount `secret`, path_prefix `rekey/`).
# The tests log in with a token bound to exactly this policy (plus Vault's `default` policy,
# which lets a token look itself up, renew itself and ask its capabilities: all rekey needs
# beyond these paths). Change `secret` and `rekey/` to your mount and path_prefix.
#
# Consumers need only read on the consumer entries, e.g.
#   path "secret/data/rekey/+" { capabilities = ["read"] }
# (`+` is one path segment, so this keeps them out of "secret/data/rekey/.rekey/*": rekey's
# state, pending secrets included).

# Consumer entries (`rekey/<slot>`) and rekey's state entries (`rekey/.rekey/<slot>`):
# read them and write new versions (every write is a check-and-set).
path "secret/data/rekey/*" {
  capabilities = ["create", "read", "update"]
}

# Versions and the `managed_by = rekey` mark (custom_metadata); list the state folder.
path "secret/metadata/rekey/*" {
  capabilities = ["create", "read", "update", "list"]
}

# Retire: soft-delete one version (recoverable with `vault kv undelete`). No destroy, no
# metadata delete: rekey never erases history.
path "secret/delete/rekey/*" {
  capabilities = ["update"]
}
