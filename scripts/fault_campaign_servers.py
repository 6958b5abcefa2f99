"""The real servers the fault campaign runs against, each a child process on 127.0.0.1 that
the campaign can stop, freeze and restart mid-run:

- `Emulator`: `rekey emulator` with a state file, so a restart keeps every client and secret.
- `OpenBao`: the real `bao` server with integrated (raft) storage on disk (not dev mode, which
  keeps data in memory; OpenBao 2 has no `file` storage), initialised and unsealed once, and unsealed again after every restart.
- `Moto`: moto's server (AWS Secrets Manager). moto keeps its data in memory only, so it cannot
  be restarted without losing everything; the honest stand-in for "the server went away" is
  SIGSTOP (it stops answering, connections hang) and SIGCONT after a pause.

Every child gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the campaign even if the campaign is
killed, and is stopped by its own pid (never by name). Secrets (bootstrap secrets, the unseal
key, root token) are passed through files (0600) or the environment, never on a command line.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Runs in a child before exec: the kernel kills it when its parent dies, however."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(pair=False):
    """A free loopback port (and, with pair, one whose successor is free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def http(method, url, body=None, headers=None, timeout=10):
    """(status, parsed JSON or None). Never raises for an HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            try:
                return r.status, (json.loads(raw) if raw else None)
            except ValueError:
                return r.status, None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else None
        except ValueError:
            return e.code, None


class Child:
    """A server process with a log file; stop() and kill() act on its pid only."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = log_path
        self.proc = None

    def _spawn(self, argv, env=None, cwd=None):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=cwd,
            preexec_fn=die_with_parent,
        )
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Stops the server with `sig` and waits for it (SIGKILL if SIGTERM takes too long)."""
        if not self.alive():
            return
        # A stopped process cannot handle SIGTERM; let it run first.
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def wait_until(self, ready, within=30):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                with open(self.log_path, errors="replace") as f:
                    tail = f.read()[-400:]
                raise RuntimeError(f"{self.name} exited at start: {tail}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready in {within}s; see {self.log_path}")


class Emulator(Child):
    """`rekey emulator` on a fixed port with a seed and a state file (state survives restarts;
    fault settings and request counters do not)."""

    def __init__(self, binary, workdir, seed):
        super().__init__("emulator", os.path.join(workdir, "emulator.log"))
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seed_path = os.path.join(workdir, "emulator-seed.json")
        self.state_path = os.path.join(workdir, "emulator-state.json")
        write_private(self.seed_path, json.dumps(seed))

    def start(self):
        self._spawn([self.binary, "emulator", "--listen", f"127.0.0.1:{self.port}",
                     "--seed", self.seed_path, "--state-file", self.state_path],
                    env={**os.environ, "RUST_LOG": "rekey=info"})
        self.wait_until(lambda: http("GET", self.url + "/_emulator/health", timeout=2)[0] == 200)

    def restart(self, sig, pause):
        self.kill(sig)
        time.sleep(pause)
        self.start()

    def set_faults(self, faults):
        status, body = http("PUT", self.url + "/_emulator/faults", faults)
        if status != 200:
            raise RuntimeError(f"emulator refused faults {faults}: {status} {body}")

    def set_clock(self, offset_seconds):
        """Moves the clock the emulator records clients' use by (a consumer "now" on rekey's
        moved clock)."""
        status, body = http("PUT", self.url + "/_emulator/clock", {"offset_seconds": offset_seconds})
        if status != 200:
            raise RuntimeError(f"emulator refused the clock offset: {status} {body}")

    def stats(self):
        status, body = http("GET", self.url + "/_emulator/stats")
        if status != 200:
            raise RuntimeError(f"emulator stats: {status}")
        return body


class OpenBao(Child):
    """A real OpenBao server with persistent (raft) storage, so it can be killed and restarted
    mid-run like a production Vault. Holds the unseal key and root token in memory only."""

    def __init__(self, bao_bin, workdir):
        super().__init__("openbao", os.path.join(workdir, "openbao.log"))
        self.bin = bao_bin
        self.port = free_port(pair=True)
        self.addr = f"http://127.0.0.1:{self.port}"
        self.dir = os.path.join(workdir, "openbao")
        os.makedirs(os.path.join(self.dir, "data"), mode=0o700, exist_ok=True)
        self.config = os.path.join(self.dir, "config.hcl")
        with open(self.config, "w") as f:
            f.write(
                f'storage "raft" {{\n  path = "{self.dir}/data"\n  node_id = "campaign"\n}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
                f'  cluster_address = "127.0.0.1:{self.port + 1}"\n  tls_disable = true\n}}\n'
                f'api_addr = "{self.addr}"\ncluster_addr = "http://127.0.0.1:{self.port + 1}"\n'
                'ui = false\n'
            )
        self.unseal_key = None
        self.root = None

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        return env

    def start(self):
        self._spawn([self.bin, "server", f"-config={self.config}"], env=self._env())
        self.wait_until(lambda: http("GET", self.addr + "/v1/sys/health", timeout=2)[0] in
                        (200, 429, 472, 473, 501, 503))
        if self.unseal_key is None:
            status, body = http("PUT", self.addr + "/v1/sys/init",
                                {"secret_shares": 1, "secret_threshold": 1})
            if status != 200:
                raise RuntimeError(f"openbao init: {status}")
            self.unseal_key = body["keys_base64"][0]
            self.root = body["root_token"]
        status, _ = http("PUT", self.addr + "/v1/sys/unseal", {"key": self.unseal_key})
        if status != 200:
            raise RuntimeError(f"openbao unseal: {status}")
        self.wait_until(lambda: http("GET", self.addr + "/v1/sys/health", timeout=2)[0] == 200)

    def api(self, method, path, body=None):
        return http(method, f"{self.addr}/v1/{path}", body, {"X-Vault-Token": self.root})

    def setup_kv(self, policy_hcl):
        """KV v2 at secret/, the least-privilege policy of docs/src/backends/vault.md, and a token bound to it."""
        status, _ = self.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
        if status not in (200, 204):
            raise RuntimeError(f"openbao mount: {status}")
        status, _ = self.api("PUT", "sys/policies/acl/rekey", {"policy": policy_hcl})
        if status not in (200, 204):
            raise RuntimeError(f"openbao policy: {status}")
        status, body = self.api("POST", "auth/token/create",
                                {"policies": ["rekey"], "ttl": "72h", "renewable": True})
        if status != 200:
            raise RuntimeError(f"openbao token: {status}")
        return body["auth"]["client_token"]

    def restart(self, sig, pause):
        self.kill(sig)
        time.sleep(pause)
        self.start()

    def secrets(self):
        return [s for s in (self.unseal_key, self.root) if s]


class Moto(Child):
    """moto's server through the repo's launcher (tests/python/moto_server.py)."""

    def __init__(self, python, launcher, workdir):
        super().__init__("moto", os.path.join(workdir, "moto.log"))
        self.python = python
        self.launcher = launcher
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self):
        self._spawn([self.python, self.launcher, "-H", "127.0.0.1", "-p", str(self.port)])

        def ready():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        self.wait_until(ready)
