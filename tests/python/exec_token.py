"""Run under `rekey exec`: the Taegis SDK's own "Generate a Token" example, pointed at the
emulator, with the pair rekey put in the environment.

Usage: exec_token.py URL [VARIABLE_PREFIX]

With VARIABLE_PREFIX (`US1_`), the SDK is told to read US1_CLIENT_ID / US1_CLIENT_SECRET for its
environment, with `write_to_config` as its documentation shows. The token is then used for one
API call (the clients of the tenant whose name starts with `rekey-`). Prints `token ok, N
clients`; never a secret or a token. Expects OAUTHLIB_INSECURE_TRANSPORT=1 and HOME set to a
temporary directory (the SDK keeps its config and token cache there).
"""

import sys
import time

from taegis_sdk_python import GraphQLService
from taegis_sdk_python.config import write_to_config
from taegis_sdk_python.tokens import get_token_exp


def main():
    url = sys.argv[1]
    env = "local"
    if len(sys.argv) > 2:
        write_to_config(env, "CLIENT_ID", f"{sys.argv[2]}CLIENT_ID")
        write_to_config(env, "CLIENT_SECRET", f"{sys.argv[2]}CLIENT_SECRET")
    service = GraphQLService(environment=env, environments={env: url})
    token = service.access_token
    if not token or get_token_exp(token) <= time.time():
        sys.exit("no usable token")
    found = service.clients.query.clients(name="rekey-%")
    print(f"token ok, {len(found)} clients")


if __name__ == "__main__":
    main()
