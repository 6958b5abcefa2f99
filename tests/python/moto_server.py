"""Starts moto's server (pinned in scripts/setup-python.sh) for rekey's AWS backend tests.

Same arguments as `moto_server` (e.g. `-H 127.0.0.1 -p PORT`). Works around a moto 5.2.5 bug
(docs/src/testing.md): after UpdateSecretVersionStage moves AWSCURRENT, moto keeps its "default version"
on the old one, so a GetSecretValue without a stage would still return the old value. Real AWS
moves it. rekey always asks for a stage explicitly; the fix keeps stage-less readers (consumers)
honest in tests too.
"""

import sys

from moto.secretsmanager.models import SecretsManagerBackend

_original = SecretsManagerBackend.update_secret_version_stage


def _update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id=None,
                                 move_to_version_id=None):
    result = _original(self, secret_id, version_stage, remove_from_version_id,
                       move_to_version_id)
    if version_stage == "AWSCURRENT" and move_to_version_id:
        secret = self.secrets[secret_id]
        secret.set_default_version_id(move_to_version_id)
    return result


SecretsManagerBackend.update_secret_version_stage = _update_secret_version_stage

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
