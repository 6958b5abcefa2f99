#!/usr/bin/env python3
"""rekey's fault campaign: real servers, real faults, an independent check after each scenario.

    scripts/fault_campaign.py --short            # CI (tests/fault_campaign.rs): a few minutes
    scripts/fault_campaign.py --full             # RELIABILITY.md's figures (>= 200 kill-and-
                                                 # recover scenarios, >= 50 concurrent trials)
    scripts/fault_campaign.py --full --seed N    # replays a campaign (the seed is printed)

One `rekey emulator` (Taegis and Cisco, with a state file), and one world per backend with a
real server: the age file backend, OpenBao (persistent storage) and moto (Secrets Manager).
Each world has Taegis slots (alternate; in-place with server- and caller-chosen secrets) and
Cisco slots (alternate). Every scenario moves the clock (REKEY_TEST_CLOCK_OFFSET) three days on
so every slot is due for exactly one rotation and every draining client is past its grace,
then injects its faults, then runs one normal `apply` (which must exit 0), then checks with
fault_campaign_check.py (standard clients only). Scenarios:

- kill:      `rekey apply` SIGKILLed at a random moment, 2-4 times in a row
- backend:   OpenBao killed and restarted mid-run; moto frozen (SIGSTOP) and thawed (SIGCONT)
- emulator:  the emulator killed and restarted mid-run (its state file kept)
- lost:      "applied but the answer was lost" on one provider mutation (one-shot), or on a
             random share of all mutations
- concurrent: 2-4 `apply` / `apply --force` processes at once; then the platform's own request
             counters must show exactly one create/rotate per slot
- slow:      latency spikes, 429 storms, 5xx bursts
- twin:      a second rekey deployment on the same tenant (same prefix, same slot names, its own
             store) rotates while losing createClient answers; neither may take the other's
             clients
- forged:    (file world) a record planted with only the public age recipient, naming a
             foreign client as due for deletion; the foreign client must survive
- stall:     a run SIGSTOPs itself at a fence before a provider mutation (REKEY_STOP_AT), a second
             run takes the slot after the lease (3 s here) ran out and rotates it, then the first
             is resumed: it must stop at the fence, and every stored pair must still work
- prune:     a slot is added, then removed with prune = true: its client keeps working for its
             grace, and is deleted by a run after it
- panic:     one slot's work panics (REKEY_PANIC_AT): that slot fails alone, the next run heals it
- drain:     after a rotation, consumers keep using some previous pairs past their grace (on the
             emulator's clock, moved as far as rekey's); runs after the grace, one of them
             SIGKILLed, must delete the unused previous clients and none of the used ones

Every world also holds foreign clients from the start: clients named like rekey's
(`rekey-<slot>-g7`, `rekey-<slot>-g3-deadbeef`, on both platforms) that rekey did not make. The
check counts foreign clients deleted and live pairs killed; both must be zero. The drain
scenario counts the clients a consumer used within the quiet window that were deleted
(`used_deleted`); it must be zero too.

Prints the seed first and one line of figures last (`campaign: ... failures: N`). Exits 1 if
any check failed. Writes no secret anywhere but the servers' own storage; every captured
output (rekey's, the servers', its own) is scanned for every secret the campaign saw.
"""

import argparse
import json
import os
import random
import re
import secrets as pysecrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")

# The checks need the official clients from the project venv (scripts/setup-python.sh).
if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")):
    if not os.path.exists(VENV_PY):
        sys.exit("fault_campaign: no venv at .venv: run scripts/setup-python.sh first")
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_campaign_check as check  # noqa: E402
from fault_campaign_servers import Emulator, Moto, OpenBao, write_private  # noqa: E402

TENANT_ADMIN = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068"
ALPHABET = string.ascii_letters + string.digits + "-_"

SLOTS = [
    {"name": "t-alt-1", "provider": "tg", "kind": "taegis", "strategy": "alternate"},
    {"name": "t-alt-2", "provider": "tg", "kind": "taegis", "strategy": "alternate"},
    {"name": "t-inplace-server", "provider": "tg", "kind": "taegis", "strategy": "in-place"},
    {"name": "t-inplace-caller", "provider": "tgc", "kind": "taegis", "strategy": "in-place"},
    {"name": "c-alt-1", "provider": "cs", "kind": "cisco", "strategy": "alternate"},
    {"name": "c-alt-2", "provider": "cs", "kind": "cisco", "strategy": "alternate"},
]

# The provider mutations whose answer the `lost` scenario drops, as the emulator names them.
MUTATIONS = ["createClient", "rotateClientSecret", "deleteClient",
             "cisco.createClient", "cisco.deleteClient"]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "2",
}

PLANS = {
    # scenarios per world; the campaign runs file, vault and aws worlds
    "short": {"kill": 2, "backend": 1, "emulator": 1, "lost": 2, "concurrent": 1, "slow": 1,
              "twin": 1, "forged": 1, "stall": 1, "prune": 1, "panic": 1, "drain": 1},
    "full": {"kill": 70, "backend": 8, "emulator": 6, "lost": 10, "concurrent": 17, "slow": 9,
             "twin": 8, "forged": 6, "stall": 10, "prune": 6, "panic": 5, "drain": 8},
}


def gen_secret(n=64):
    return "".join(pysecrets.choice(ALPHABET) for _ in range(n))


class SecretScanner:
    """Finds any known secret in a text. Secrets rekey and the emulator make are URL-safe
    strings of a few fixed lengths: candidate runs are found with one regex, then windows of
    those lengths are looked up in a set (fast over megabytes of logs)."""

    RUN = re.compile(r"[A-Za-z0-9_-]{24,}")

    def __init__(self):
        self.by_len = {}
        self.other = set()

    def add(self, s):
        if not s:
            return
        if re.fullmatch(r"[A-Za-z0-9_-]+", s) and len(s) >= 24:
            self.by_len.setdefault(len(s), set()).add(s)
        else:
            self.other.add(s)

    def __len__(self):
        return sum(len(v) for v in self.by_len.values()) + len(self.other)

    def found_in(self, text):
        for m in self.RUN.finditer(text):
            run = m.group(0)
            for n, known in self.by_len.items():
                for i in range(0, len(run) - n + 1):
                    if run[i:i + n] in known:
                        return True
        return any(s in text for s in self.other)


class World:
    """One backend with its tenant, its Cisco org, its inventory and its slots."""

    def __init__(self, campaign, name, tenant, org):
        self.c = campaign
        self.name = name
        self.dir = os.path.join(campaign.work, name)
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out)
        self.tenant, self.org = tenant, org
        self.slots = [dict(s) for s in SLOTS]
        self.day = 0
        self.snapshot = {}
        self.est = 1.0  # seconds a normal apply takes (a moving average), for kill timing
        self.env = {}
        self.reader = None
        self.nrun = 0
        # Clients rekey did not make ({client_id: name}): planted ones and the twin's.
        self.foreign = {}
        self.twin = None  # the second deployment on this world's tenant (sc_twin)
        # Slots removed with prune = true, still retiring: {slot: (kind, client_id, secret, day)}
        self.retiring = {}
        self.extra_slots = []  # slots added for the prune scenario (written into the inventory)
        self.prune = False
        self.backend_section = self.backend_name = None
        self.settings_extra = []
        self.concurrency = 4
        # Previous clients the drain scenario saw deleted after their grace (unused).
        self.drained = set()

    def write_inventory(self, backend_section=None, backend_name=None, path="inventory.toml"):
        c = self.c
        if backend_section is not None:
            self.backend_section, self.backend_name = backend_section, backend_name
        backend_section, backend_name = self.backend_section, self.backend_name
        lines = [
            "[settings]", 'verify_delay = "50ms"', "verify_attempts = 3",
            # A pending pair that fails to verify under faults is retried, never discarded, so
            # the generation check stays exact (discarding is tested in tests/rotation_taegis.rs).
            "max_verify_failures = 1000", f"concurrency = {self.concurrency}",
            f"prune = {'true' if self.prune else 'false'}", *self.settings_extra, "",
            "[defaults]", f'backend = "{backend_name}"', 'max_age = "2d"', 'grace = "1d"', "",
            backend_section, "",
        ]
        for prov, chooser in (("tg", "server"), ("tgc", "caller")):
            lines += [f"[providers.{prov}]", 'type = "taegis"', f'url = "{c.emu.url}"',
                      f'tenant = "{self.tenant}"', "rate_limit = 1000", 'timeout = "3s"',
                      f'in_place_secret = "{chooser}"',
                      'bootstrap = { client_id = { file = "boot.id" }, client_secret = { file = "boot.secret" } }', ""]
        lines += ["[providers.cs]", 'type = "cisco"', f'url = "{c.emu.url}"', "rate_limit = 1000",
                  'timeout = "3s"',
                  'bootstrap = { client_id = { file = "cboot.id" }, client_secret = { file = "cboot.secret" } }', ""]
        for s in self.slots + self.extra_slots:
            lines += ["[[slots]]", f'name = "{s["name"]}"', f'provider = "{s["provider"]}"',
                      f'strategy = "{s["strategy"]}"']
            if s["kind"] == "cisco":
                lines.append('scopes = ["enrich:read"]')
            lines.append("")
        with open(os.path.join(self.dir, path), "w") as f:
            f.write("\n".join(lines))

    # ---- running rekey ----------------------------------------------------------------------

    def start(self, *args, inventory="inventory.toml", cwd=None, env_extra=None, clock=None):
        self.nrun += 1
        base = os.path.join(self.out, f"{self.nrun:05d}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REKEY_", "AWS_", "VAULT_"))}
        env.update(self.env)
        env.update({"REKEY_LOG_FORMAT": "json", "RUST_LOG": "rekey=debug",
                    "REKEY_TEST_CLOCK_OFFSET": clock or f"{self.day}d"})
        env.update(env_extra or {})
        out, err = open(base + ".out", "wb"), open(base + ".err", "wb")
        p = subprocess.Popen([self.c.binary, "apply", "-c", inventory, *args], cwd=cwd or self.dir,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        out.close()
        err.close()
        p.base = base
        p.t0 = time.monotonic()
        self.c.outputs += [base + ".out", base + ".err"]
        return p

    def wait(self, p, timeout=300):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.c.fail(f"{self.name}: `rekey apply` still running after {timeout}s (killed)")
        return p.returncode

    def tail(self, p):
        with open(p.base + ".err", errors="replace") as f:
            lines = f.read().splitlines()[-3:]
        return " | ".join(l[:300] for l in lines)

    def normal_run(self, why):
        """The run after the faults: must exit 0 and leave everything settled."""
        p = self.start("--output", "json")
        code = self.wait(p)
        dur = time.monotonic() - p.t0
        if code != 0:
            self.c.fail(f"{self.name}: normal apply after {why} exited {code}: {self.tail(p)}")
        return dur

    # ---- the check --------------------------------------------------------------------------

    def verify(self, why, expect_rotation=True):
        platform = self.c.platform(self)
        platform.fresh_home()
        twin_ids, twin_fails = self.c.check_twin(self, platform)
        extra = {"slots": set(self.retiring),
                 "clients": {v[1] for v in self.retiring.values()} | twin_ids,
                 "drained": self.drained}
        fails, snap, n = check.check_world(self, self.reader, platform, self.snapshot,
                                           expect_rotation, self.c.secret_set,
                                           foreign=self.foreign, extra=extra)
        fails += twin_fails + self.c.check_retiring(self, platform)
        for s in snap.values():
            self.c.scanner.add(s["current"][1])
            for d in s["draining"]:
                self.c.scanner.add(d[1])
        for s in self.c.secret_set:
            self.c.scanner.add(s)
        self.c.figures["slots_checked"] += n
        self.c.figures["checks"] += 1
        for f in fails:
            if "foreign client" in f and "deleted" in f:
                self.c.figures["foreign_deleted"] += 1
            if "does not log in" in f or "died inside its grace" in f:
                self.c.figures["live_pairs_killed"] += 1
            self.c.fail(f"{why}: {f}")
        self.c.figures["foreign_checked"] += len(self.foreign)
        if snap:
            self.snapshot = snap


class Campaign:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
        self.rng = random.Random(self.seed)
        self.binary = os.path.abspath(args.binary)
        self.work = tempfile.mkdtemp(prefix="rekey-campaign-")
        self.outputs = []
        self.failures = []
        self.secret_set = set()
        self.scanner = SecretScanner()
        self.figures = {k: 0 for k in (
            "scenarios", "kill_scenarios", "sigkills", "kill_missed", "concurrent_trials",
            "concurrent_processes", "backend_restarts", "backend_freezes", "emulator_restarts",
            "lost_answer_scenarios", "slow_scenarios", "normal_runs", "checks", "slots_checked",
            "twin_trials", "forged_records", "stalled_runs", "stalls_fenced", "prune_trials",
            "panics", "foreign_checked", "foreign_deleted", "live_pairs_killed", "drain_trials",
            "drain_used", "used_deleted", "drain_unused_deleted")}
        self.emu_faults = {}
        self.emu_base = {}
        self.emu = self.bao = self.moto = None
        self.log_path = os.path.join(self.work, "campaign.log")
        self.log_file = open(self.log_path, "a")
        self.outputs.append(self.log_path)

    def say(self, msg):
        print(msg, flush=True)
        self.log_file.write(msg + "\n")
        self.log_file.flush()

    def fail(self, msg):
        self.failures.append(msg)
        self.say(f"FAIL [seed {self.seed}] {msg}")

    # ---- setup --------------------------------------------------------------------------------

    def setup(self):
        venv = os.path.join(ROOT, ".venv")
        bao = os.path.join(venv, "bin", "bao")
        for need, hint in ((self.binary, "build rekey first (cargo build --features test-hooks)"),
                           (bao, "run scripts/setup-python.sh"),
                           (shutil.which("age") or "/nonexistent/age", "install Debian's `age` (scripts/setup-system.sh)")):
            if not os.path.exists(need):
                raise SystemExit(f"fault_campaign: {need} is missing: {hint}")
        # The campaign moves the clock and kills at crash points: both are test hooks, which the
        # default build leaves out. Without them every scenario would pass for the wrong reason.
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        if "test-hooks" not in version:
            raise SystemExit(f"fault_campaign: {self.binary} has no test hooks "
                             "(REKEY_TEST_CLOCK_OFFSET, REKEY_CRASH_AT): cargo build --features test-hooks")
        names = ["file", "vault", "aws"] if not self.args.backends else self.args.backends.split(",")
        seed = {"tenants": [], "orgs": []}
        self.creds = {}
        base = self.rng.randrange(10_000, 90_000)
        for i, name in enumerate(names):
            tenant = str(base + i)
            org = f"org-campaign-{name}-{self.rng.randrange(10**6):06d}"
            tid, tsec = gen_secret(32).replace("-", "a").replace("_", "b"), gen_secret(64)
            cid, cpw = f"client-{pysecrets.token_hex(16)}", gen_secret(54)
            seed["tenants"].append({"id": tenant, "clients": [
                {"client_id": tid, "secret": tsec, "name": f"campaign-admin-{name}", "roles": [TENANT_ADMIN]}]})
            seed["orgs"].append({"id": org, "clients": [
                {"client_id": cid, "password": cpw, "name": f"campaign-cisco-admin-{name}",
                 "scopes": ["oauth", "profile", "enrich", "inspect"]}]})
            self.creds[name] = (tenant, tid, tsec, org, cid, cpw)
            for s in (tsec, cpw):
                self.secret_set.add(s)
                self.scanner.add(s)
        self.emu = Emulator(self.binary, self.work, seed)
        self.emu.start()
        self.bao = self.moto = None
        self.worlds = []
        for name in names:
            tenant, tid, tsec, org, cid, cpw = self.creds[name]
            w = World(self, name, tenant, org)
            for fname, val in (("boot.id", tid), ("boot.secret", tsec), ("cboot.id", cid), ("cboot.secret", cpw)):
                write_private(os.path.join(w.dir, fname), val)
            if name == "file":
                subprocess.run([self.binary, "keygen", "-o", "rekey.key"], cwd=w.dir, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                w.write_inventory('[backends.local]\ntype = "file"\npath = "store"\nidentity = { file = "rekey.key" }',
                                  "local")
                w.reader = check.FileReader(os.path.join(w.dir, "store"), os.path.join(w.dir, "rekey.key"))
            elif name == "vault":
                self.bao = OpenBao(bao, self.work)
                self.bao.start()
                with open(os.path.join(ROOT, "examples", "vault-policy.hcl")) as f:
                    token = self.bao.setup_kv(f.read())
                for s in self.bao.secrets() + [token]:
                    self.scanner.add(s)
                write_private(os.path.join(w.dir, "vault-token"), token)
                w.write_inventory(
                    f'[backends.vault]\ntype = "vault"\naddress = "{self.bao.addr}"\nmount = "secret"\n'
                    'path_prefix = "rekey/"\nauth = { method = "token", token = { file = "vault-token" } }\n'
                    'timeout = "3s"', "vault")
                w.reader = check.VaultReader(self.bao.addr, self.bao.root, "rekey/")
            elif name == "aws":
                self.moto = Moto(VENV_PY, os.path.join(ROOT, "tests", "python", "moto_server.py"), self.work)
                self.moto.start()
                w.env = dict(AWS_ENV)
                w.write_inventory(
                    f'[backends.aws]\ntype = "aws"\nregion = "us-east-1"\nendpoint_url = "{self.moto.endpoint}"\n'
                    'prefix = "rekey/"\ntimeout = "3s"', "aws")
                w.reader = check.AwsReader(self.moto.endpoint, "rekey/")
            else:
                raise SystemExit(f"fault_campaign: unknown backend {name} (file, vault, aws)")
            self.worlds.append(w)
        for w in self.worlds:
            self.plant_foreign(w)

    def plant_foreign(self, w):
        """Clients named like rekey's that rekey did not make: they must outlive everything."""
        platform = self.platform(w)
        platform.fresh_home()
        for name in ("rekey-t-alt-1-g7", "rekey-t-alt-2-g1", "rekey-t-alt-1-g3-deadbeef",
                     "rekey-t-inplace-server-g2"):
            object_id, secret = platform.taegis_plant_client(name)
            self.secret_set.add(secret)
            self.scanner.add(secret)
            cid = next(c for c, n in platform.taegis_clients().items() if n == name)
            w.foreign[cid] = name
        for name in ("rekey-c-alt-1-g5", "rekey-c-alt-2-g1-0badf00d"):
            cid, password = platform.cisco_plant_client(name)
            self.secret_set.add(password)
            self.scanner.add(password)
            w.foreign[cid] = name

    def check_retiring(self, w, platform):
        """Slots removed with prune = true: alive (the pair logs in) inside their grace, and
        gone (entry and client) once a run after their grace has passed."""
        fails = []
        if not w.retiring:
            return fails
        stored = w.reader.read_all()
        listed = check.listed_ids(platform)
        for slot, (kind, cid, secret, day) in list(w.retiring.items()):
            login = platform.cisco_login_ok if kind == "cisco" else platform.taegis_login_ok
            if w.day == day:
                if slot not in stored or not (stored[slot][0].get("retiring")):
                    fails.append(f"{w.name}/{slot}: a slot removed with prune is not retiring")
                if cid not in listed or not login(cid, secret):
                    fails.append(f"{w.name}/{slot}: removed with prune, its pair does not log in "
                                 "inside its grace (live pair killed)")
            else:
                if slot in stored:
                    fails.append(f"{w.name}/{slot}: still in the backend after its grace")
                if cid in listed:
                    fails.append(f"{w.name}/{slot}: its client still exists after its grace")
                if slot not in stored and cid not in listed:
                    del w.retiring[slot]
        return fails

    def platform(self, w):
        tenant, tid, tsec, org, cid, cpw = self.creds[w.name]
        # The SDK's token caches go under the work dir, which is removed at the end.
        return check.Platform(self.emu.url, tenant, tid, tsec, org, cid, cpw, self.work)

    def stop(self):
        for s in (self.emu, self.bao, self.moto):
            if s is not None:
                s.kill(signal.SIGTERM)
        self.log_file.close()

    # ---- fault bookkeeping --------------------------------------------------------------------

    def collect_emulator_faults(self):
        """Adds the emulator's injected-fault counters since the last call (they restart at 0
        when the emulator restarts)."""
        now = self.emu.stats().get("faults_injected", {})
        for k, v in now.items():
            self.emu_faults[k] = self.emu_faults.get(k, 0) + v - self.emu_base.get(k, 0)
        self.emu_base = dict(now)

    def mutation_counts(self):
        req = self.emu.stats().get("requests", {})
        return {m: req.get(m, 0) for m in MUTATIONS}

    # ---- scenarios ----------------------------------------------------------------------------

    def begin(self, w, kind):
        w.day += 3
        self.figures["scenarios"] += 1
        self.emu.set_faults({})

    def end(self, w, why):
        self.emu.set_faults({})
        dur = w.normal_run(why)
        self.figures["normal_runs"] += 1
        w.est = 0.7 * w.est + 0.3 * max(dur, 0.2)
        self.collect_emulator_faults()
        w.verify(why)

    def kill_at_random(self, w, p, frac_max=0.9):
        """SIGKILLs p at a random moment within its expected run time. True if it landed."""
        time.sleep(self.rng.uniform(0, w.est * frac_max))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            self.figures["sigkills"] += 1
            return True
        self.figures["kill_missed"] += 1
        return False

    def sc_kill(self, w, i):
        why = f"{w.name} kill#{i}"
        self.begin(w, "kill")
        n = self.rng.randint(2, 4)
        for _ in range(n):
            p = w.start()
            self.kill_at_random(w, p)
            if p.returncode not in (-signal.SIGKILL, 0):
                self.fail(f"{why}: a run that was being killed exited {p.returncode}: {w.tail(p)}")
        self.figures["kill_scenarios"] += 1
        self.end(w, why)

    def sc_backend(self, w, i):
        why = f"{w.name} backend#{i}"
        if w.name == "file":
            # The file backend has no server to stop: its crash behaviour is the `kill`
            # scenario's (a killed writer mid-rename); run one of those instead.
            return self.sc_kill(w, f"{i}b")
        self.begin(w, "backend")
        p = w.start()
        time.sleep(self.rng.uniform(0, w.est))
        if w.name == "vault":
            sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
            self.bao.restart(sig, self.rng.uniform(0, 1.5))
            self.figures["backend_restarts"] += 1
        else:
            self.moto.freeze()
            time.sleep(self.rng.uniform(0.2, 5))
            self.moto.thaw()
            self.figures["backend_freezes"] += 1
        code = w.wait(p)
        if code not in (0, 1, 4):
            self.fail(f"{why}: the run during the outage exited {code}: {w.tail(p)}")
        self.end(w, why)

    def sc_emulator(self, w, i):
        why = f"{w.name} emulator#{i}"
        self.begin(w, "emulator")
        p = w.start()
        time.sleep(self.rng.uniform(0, w.est))
        self.collect_emulator_faults()
        self.emu.restart(self.rng.choice([signal.SIGKILL, signal.SIGTERM]), self.rng.uniform(0, 1.0))
        self.emu_base = {}
        self.figures["emulator_restarts"] += 1
        code = w.wait(p)
        if code not in (0, 1, 4):
            self.fail(f"{why}: the run during the restart exited {code}: {w.tail(p)}")
        self.end(w, why)

    def sc_lost(self, w, i):
        why = f"{w.name} lost#{i}"
        self.begin(w, "lost")
        # Worlds start at different mutations, so even the short form covers all of them.
        k = (i + 2 * self.worlds.index(w)) % (len(MUTATIONS) + 1)
        if k < len(MUTATIONS):
            op = MUTATIONS[k]
            skip = self.rng.randint(0, 1)
            faults = {"fail_next": [{"operation": op, "action": "drop_after_commit", "skip": skip}]}
            # Deletes happen only once a previous rotation left draining clients.
            reachable = self.expected_mutations(w)[op] > skip
            why += f" ({op})"
        else:
            faults = {"drop_after_commit_rate": 0.3, "fault_seed": self.rng.randrange(2**32)}
            reachable = False  # a random share may miss every mutation
            why += " (30% of mutations)"
        self.emu.set_faults(faults)
        p = w.start()
        code = w.wait(p)
        if code not in (0, 1):
            self.fail(f"{why}: the run with lost answers exited {code}: {w.tail(p)}")
        before = self.emu_faults.get("drop_after_commit", 0)
        self.collect_emulator_faults()
        if self.emu_faults.get("drop_after_commit", 0) == before and reachable:
            self.fail(f"{why}: no answer was dropped (the mutation was not reached)")
        self.figures["lost_answer_scenarios"] += 1
        self.end(w, why)

    def expected_mutations(self, w):
        """The provider calls one clean rotation of every slot makes, from the last check."""
        want = {m: 0 for m in MUTATIONS}
        for s in w.slots:
            prev = w.snapshot.get(s["name"])
            if prev is None:
                continue
            cisco = s["kind"] == "cisco"
            if s["strategy"] == "in-place":
                want["rotateClientSecret"] += 1
            else:
                want["cisco.createClient" if cisco else "createClient"] += 1
                want["cisco.deleteClient" if cisco else "deleteClient"] += len(prev["draining"])
        # Slots removed with prune = true whose grace is over now: their client is deleted.
        for kind, _cid, _secret, day in w.retiring.values():
            if day < w.day:
                want["cisco.deleteClient" if kind == "cisco" else "deleteClient"] += 1
        return want

    def sc_concurrent(self, w, i):
        why = f"{w.name} concurrent#{i}"
        self.begin(w, "concurrent")
        before = self.mutation_counts()
        n = self.rng.randint(2, 4)
        procs = [w.start(*(["--force"] if self.rng.random() < 0.5 else [])) for _ in range(n)]
        for p in procs:
            code = w.wait(p)
            if code not in (0, 3):
                self.fail(f"{why}: a concurrent apply exited {code}: {w.tail(p)}")
        self.figures["concurrent_trials"] += 1
        self.figures["concurrent_processes"] += n
        after = self.mutation_counts()
        # The platform's own counters: one create per alternate slot (and one rotate per
        # in-place slot), one delete per client past its grace: a second rotation of any slot
        # shows up here even if it left no trace in the records.
        want = self.expected_mutations(w)
        got = {m: after[m] - before[m] for m in MUTATIONS}
        if w.snapshot and got != want:
            self.fail(f"{why}: the platform saw mutations {got}, expected exactly {want}")
        self.end(w, why)

    def sc_slow(self, w, i):
        why = f"{w.name} slow#{i}"
        self.begin(w, "slow")
        r = self.rng
        kind = ["latency", "429", "5xx", "mixed"][(i + self.worlds.index(w)) % 4]
        if kind == "latency":
            faults = {"latency_ms": r.randint(50, 300), "latency_jitter_ms": r.randint(100, 800),
                      "fault_seed": r.randrange(2**32)}
        elif kind == "429":
            faults = r.choice([{"rate_limit_per_sec": r.uniform(3, 10)},
                               {"fail_next": [{"action": "status:429", "count": r.randint(3, 15)}]}])
        elif kind == "5xx":
            faults = r.choice([{"error_rate": r.uniform(0.1, 0.3), "fault_seed": r.randrange(2**32)},
                               {"fail_next": [{"action": f"status:{r.choice([500, 502, 503])}",
                                               "count": r.randint(3, 10)}]}])
        else:
            faults = {"latency_ms": r.randint(20, 100), "latency_jitter_ms": 300,
                      "rate_limit_per_sec": r.uniform(5, 15), "error_rate": r.uniform(0.05, 0.2),
                      "fault_seed": r.randrange(2**32)}
        why += f" ({kind})"
        self.emu.set_faults(faults)
        p = w.start()
        code = w.wait(p, timeout=600)
        # Exit 4: the bootstrap token could not be had at all, so nothing was changed.
        ok = (0,) if kind == "latency" else (0, 1, 4)
        if code not in ok:
            self.fail(f"{why}: the run under {kind} exited {code}: {w.tail(p)}")
        self.figures["slow_scenarios"] += 1
        self.end(w, why)

    def sc_twin(self, w, i):
        """Another deployment on the same tenant, same default prefix and slot names, its own
        store: it rotates while losing createClient answers, then resumes. Neither deployment
        may take, rotate or delete the other's clients."""
        why = f"{w.name} twin#{i}"
        self.begin(w, "twin")
        tdir = os.path.join(w.dir, "twin")
        slots = [s for s in w.slots if s["strategy"] == "alternate"]
        if w.twin is None:
            os.makedirs(tdir)
            for f in ("boot.id", "boot.secret", "cboot.id", "cboot.secret"):
                shutil.copy(os.path.join(w.dir, f), os.path.join(tdir, f))
                os.chmod(os.path.join(tdir, f), 0o600)
            subprocess.run([self.binary, "keygen", "-o", "rekey.key"], cwd=tdir, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            twin = World.__new__(World)
            twin.__dict__.update(w.__dict__)
            twin.slots, twin.extra_slots, twin.prune, twin.settings_extra = slots, [], False, []
            twin.dir = tdir
            twin.write_inventory('[backends.local]\ntype = "file"\npath = "store"\n'
                                 'identity = { file = "rekey.key" }', "local")
            w.twin = check.FileReader(os.path.join(tdir, "store"), os.path.join(tdir, "rekey.key"))
            p = w.start(cwd=tdir)
            if w.wait(p) != 0:
                self.fail(f"{why}: the twin's first apply exited {p.returncode}: {w.tail(p)}")
        # Lost createClient answers on both platforms, then a forced rotation by the twin.
        skip = self.rng.randint(0, 1)
        self.emu.set_faults({"fail_next": [
            {"operation": "createClient", "action": "drop_after_commit", "skip": skip},
            {"operation": "cisco.createClient", "action": "drop_after_commit", "skip": skip}]})
        p = w.start("--force", cwd=tdir)
        code = w.wait(p)
        if code not in (0, 1):
            self.fail(f"{why}: the twin's apply with lost answers exited {code}: {w.tail(p)}")
        self.emu.set_faults({})
        p = w.start(cwd=tdir)
        if w.wait(p) != 0:
            self.fail(f"{why}: the twin's normal apply exited {p.returncode}: {w.tail(p)}")
        # The world's check (in `end`) proves both sides: the world's pairs and clients are
        # intact, and so are the twin's (`check_twin`).
        self.figures["twin_trials"] += 1
        self.end(w, why)

    def check_twin(self, w, platform):
        """The twin deployment's clients (returned, so the world's check counts them as
        another's, not as orphans) and a failure for each twin pair that no longer works."""
        ids, fails = set(), []
        if w.twin is None:
            return ids, fails
        listed = check.listed_ids(platform)
        kinds = {s["name"]: s["kind"] for s in w.slots}
        for slot, (rec, _v) in w.twin.read_all().items():
            for _role, c in check.pairs_of(rec):
                self.secret_set.add(c["secret"])
                self.scanner.add(c["secret"])
                ids.add(c["client_id"])
            cur = rec.get("current")
            login = platform.cisco_login_ok if kinds.get(slot) == "cisco" else platform.taegis_login_ok
            if not cur or cur["client_id"] not in listed or not login(cur["client_id"], cur["secret"]):
                fails.append(f"the twin deployment's current pair of {slot} does not log in")
        return ids, fails

    def sc_forged(self, w, i):
        """A record planted in the file store with only the public recipient, naming a foreign
        client as draining and due, and as retiring: rekey must never act on it."""
        if w.name != "file":
            return self.sc_kill(w, f"{i}f")
        why = f"{w.name} forged#{i}"
        self.begin(w, "forged")
        platform = self.platform(w)
        platform.fresh_home()
        name = f"rekey-ghost-{i}-g1"
        object_id, secret = platform.taegis_plant_client(name)
        self.secret_set.add(secret)
        self.scanner.add(secret)
        cid = next(c for c, n in platform.taegis_clients().items() if n == name)
        w.foreign[cid] = name
        recipient = subprocess.run(["age-keygen", "-y", os.path.join(w.dir, "rekey.key")],
                                   capture_output=True, text=True, check=True).stdout.strip()
        cred = {"generation": 1, "client_id": cid, "object_id": object_id, "name": name,
                "secret": gen_secret(40), "created_at": "2020-01-01T00:00:00Z",
                "verified_at": None, "owned": True}
        slot = self.rng.choice([f"ghost-{i}", "t-alt-1"])
        record = {"schema": 1, "managed_by": "rekey", "slot": slot, "provider": "tg",
                  "tenant": w.tenant, "generation": 1, "current": None, "pending": None,
                  "draining": [{"credential": cred, "delete_after": "2020-01-02T00:00:00Z"}],
                  "op": None, "lease": None, "last": None,
                  "retiring": {"since": "2020-01-01T00:00:00Z", "delete_after": "2020-01-02T00:00:00Z"}}
        self.scanner.add(cred["secret"])
        path = os.path.join(w.dir, "store", f"{slot}.age")
        saved = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                saved = f.read()
        plain = json.dumps({"version": 1, "record": record}).encode()
        enc = subprocess.run(["age", "-r", recipient], input=plain, capture_output=True, check=True).stdout
        tmp = path + ".planted"
        with open(tmp, "wb") as f:
            f.write(enc)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        p = w.start()
        code = w.wait(p)
        if code not in (0, 1):
            self.fail(f"{why}: the apply beside a forged record exited {code}: {w.tail(p)}")
        # Take the planted record away again (a genuine record is put back as it was).
        if saved is None:
            if os.path.exists(path):  # (a rekey that acted on it may have removed it)
                os.remove(path)
        else:
            with open(tmp, "wb") as f:
                f.write(saved)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        self.figures["forged_records"] += 1
        self.end(w, why)

    def sc_stall(self, w, i):
        """A run stops itself (SIGSTOP) at a fence; after its lease has run out, another run takes
        the slots and rotates them; then the first carries on. It must stop at its fence."""
        why = f"{w.name} stall#{i}"
        self.begin(w, "stall")
        # One slot at a time: the stopped process then holds no store lock while it is stopped.
        w.settings_extra, w.concurrency = ['lease_ttl = "3s"'], 1
        w.write_inventory(path="stall.toml")
        w.settings_extra, w.concurrency = [], 4
        point = self.rng.choice(["before-provider-create", "before-provider-rotate",
                                 "before-provider-delete"])
        why += f" ({point})"
        first = w.start(inventory="stall.toml", env_extra={"REKEY_STOP_AT": point})
        stopped = wait_stopped(first, 60)
        if stopped:
            time.sleep(3.5)  # the lease (3 s) runs out in real time while it is stopped
            second = w.start(inventory="stall.toml")
            code = w.wait(second)
            if code not in (0, 1):
                self.fail(f"{why}: the run beside the stopped one exited {code}: {w.tail(second)}")
            os.kill(first.pid, signal.SIGCONT)
            self.figures["stalled_runs"] += 1
        code = w.wait(first)
        # Exit 3: it found at its fence that another run holds a slot now, and stopped there.
        if code not in (0, 1, 3):
            self.fail(f"{why}: the resumed run exited {code}: {w.tail(first)}")
        if stopped:
            text = ""
            for ext in (".out", ".err"):
                with open(first.base + ext, errors="replace") as f:
                    text += f.read()
            if "lost the slot's lease" in text:
                self.figures["stalls_fenced"] += 1
        self.end(w, why)

    def sc_prune(self, w, i):
        """A slot added, then removed with prune = true: it keeps working for its grace (1 day),
        and a run after its grace deletes its client and entry (checked by check_retiring)."""
        why = f"{w.name} prune#{i}"
        self.begin(w, "prune")
        kind = self.rng.choice(["taegis", "cisco"])
        extra = {"name": f"x-{i}", "provider": "cs" if kind == "cisco" else "tg", "kind": kind,
                 "strategy": "alternate"}
        w.extra_slots = [extra]
        w.write_inventory()
        p = w.start()
        if w.wait(p) != 0:
            self.fail(f"{why}: the apply that adds {extra['name']} exited {p.returncode}: {w.tail(p)}")
        rec = w.reader.read_all().get(extra["name"], (None, None))[0]
        w.extra_slots, w.prune = [], True
        w.write_inventory()
        p = w.start()
        if w.wait(p) != 0:
            self.fail(f"{why}: the apply that prunes {extra['name']} exited {p.returncode}: {w.tail(p)}")
        w.prune = False
        w.write_inventory()
        if rec and rec.get("current"):
            cur = rec["current"]
            self.secret_set.add(cur["secret"])
            self.scanner.add(cur["secret"])
            w.retiring[extra["name"]] = (kind, cur["client_id"], cur["secret"], w.day)
        else:
            self.fail(f"{why}: {extra['name']} was not created")
        self.figures["prune_trials"] += 1
        self.end(w, why)

    def sc_panic(self, w, i):
        why = f"{w.name} panic#{i}"
        self.begin(w, "panic")
        slot = self.rng.choice(w.slots)["name"]
        p = w.start(env_extra={"REKEY_PANIC_AT": slot})
        code = w.wait(p)
        if code != 1:
            self.fail(f"{why}: a run whose slot {slot} panicked exited {code}, expected 1: {w.tail(p)}")
        self.figures["panics"] += 1
        self.end(w, why)

    def sc_drain(self, w, i):
        """Usage-aware draining under a kill. The rotation run leaves every alternate slot's
        previous client draining (grace 1 day); consumers keep using a random half of them an
        hour after the grace ended, on the emulator's clock moved as far as rekey's. A run
        10 minutes later (SIGKILLed at a random moment, then run again) must delete the unused
        previous clients and keep every used one: a client a consumer used within the quiet
        window (2 h) is never deleted."""
        why = f"{w.name} drain#{i}"
        self.begin(w, "drain")
        p = w.start()
        if w.wait(p) != 0:
            self.fail(f"{why}: the rotation run exited {p.returncode}: {w.tail(p)}")
        kinds = {s["name"]: s["kind"] for s in w.slots}
        draining = []  # (slot, kind, client_id, secret)
        for slot, (rec, _) in w.reader.read_all().items():
            if slot not in kinds or not rec.get("draining"):
                continue
            for d in rec["draining"]:
                c = d["credential"]
                draining.append((slot, kinds[slot], c["client_id"], c["secret"]))
                self.secret_set.add(c["secret"])
                self.scanner.add(c["secret"])
        used = [d for d in draining if self.rng.random() < 0.5]
        if draining and not used:
            used = [self.rng.choice(draining)]
        platform = self.platform(w)
        platform.fresh_home()
        # An hour after the grace (day + 1d) ended, on rekey's clock.
        self.emu.set_clock((w.day * 86400) + 86400 + 3600)
        try:
            for slot, kind, cid, secret in used:
                ok = (platform.cisco_login_ok(cid, secret) if kind == "cisco"
                      else platform.taegis_login_ok(cid, secret))
                if not ok:
                    self.fail(f"{why}: {slot}'s previous pair {cid} does not log in inside its grace")
        finally:
            self.emu.set_clock(0)
        clock = f"{w.day}d 25h 10m"
        p = w.start(clock=clock)
        self.kill_at_random(w, p)
        p = w.start(clock=clock)
        if w.wait(p) != 0:
            self.fail(f"{why}: the run after the grace exited {p.returncode}: {w.tail(p)}")
        listed = check.listed_ids(platform)
        used_ids = {d[2] for d in used}
        for slot, kind, cid, _ in draining:
            if cid in used_ids and cid not in listed:
                self.figures["used_deleted"] += 1
                self.fail(f"{why}: {slot}'s previous client {cid} was deleted although a consumer "
                          "used it within the quiet window")
            elif cid not in used_ids and cid in listed:
                self.fail(f"{why}: {slot}'s unused previous client {cid} outlived its grace")
            elif cid not in used_ids:
                self.figures["drain_unused_deleted"] += 1
                w.drained.add(cid)
        self.figures["drain_used"] += len(used)
        self.figures["drain_trials"] += 1
        self.end(w, why)

    # ---- the campaign -------------------------------------------------------------------------

    def run(self):
        plan = PLANS["full" if self.args.full else "short"]
        if self.args.kill is not None:
            plan = dict(plan, kill=self.args.kill)
        if self.args.scenarios:
            kinds = self.args.scenarios.split(",")
            unknown = [k for k in kinds if k not in plan]
            if unknown:
                raise SystemExit(f"fault_campaign: unknown scenario kind {unknown}: {sorted(plan)}")
            plan = {k: n for k, n in plan.items() if k in kinds}
        t0 = time.monotonic()
        self.setup()
        self.say(f"campaign: seed {self.seed} ({'full' if self.args.full else 'short'}), binary "
                 f"{os.path.relpath(self.binary, ROOT)}, worlds {[w.name for w in self.worlds]}, work dir {self.work}")
        for w in self.worlds:
            # The first run creates every slot; nothing is compared yet.
            w.day = 0
            dur = w.normal_run("the first apply")
            w.est = max(dur, 0.2)
            w.verify(f"{w.name} create", expect_rotation=False)
        # Interleave scenario kinds so each world's slots pass through every kind many times.
        order = []
        for kind, n in plan.items():
            order += [(kind, i) for i in range(n)]
        self.rng.shuffle(order)
        runners = {"kill": self.sc_kill, "backend": self.sc_backend, "emulator": self.sc_emulator,
                   "lost": self.sc_lost, "concurrent": self.sc_concurrent, "slow": self.sc_slow,
                   "twin": self.sc_twin, "forged": self.sc_forged, "stall": self.sc_stall,
                   "prune": self.sc_prune, "panic": self.sc_panic, "drain": self.sc_drain}
        for n, (kind, i) in enumerate(order):
            for w in self.worlds:
                try:
                    runners[kind](w, i)
                except Exception as e:  # a harness error is a failure too, never a skip
                    self.fail(f"{w.name} {kind}#{i}: {type(e).__name__}: {scrub(str(e), self.scanner)}")
                    self.emu.set_faults({}) if self.emu.alive() else None
            if (n + 1) % 10 == 0:
                self.say(f"  ... {n + 1}/{len(order)} rounds, {self.figures['scenarios']} scenarios, "
                         f"{len(self.failures)} failures, {time.monotonic() - t0:.0f}s")
        self.self_test()
        self.scan_outputs()
        self.figures["seconds"] = round(time.monotonic() - t0)
        return self.report()

    def self_test(self):
        """The check must have teeth: a planted orphan client must be reported, and a secret
        planted in a text must be found."""
        w = self.worlds[0]
        platform = self.platform(w)
        platform.fresh_home()
        object_id, secret = platform.taegis_plant_client(f"rekey-{w.slots[0]['name']}-g999999")
        self.secret_set.add(secret)
        self.scanner.add(secret)
        fails, _, _ = check.check_world(w, w.reader, platform, w.snapshot, False, self.secret_set)
        platform.taegis_delete_client(object_id)
        if not any("orphaned client" in f for f in fails):
            self.fail("self-test: a planted orphan client was not reported")
        if not self.scanner.found_in(f"log line {{\"x\":\"{secret}\"}}"):
            self.fail("self-test: a planted secret was not found by the output scan")
        w.verify("after the self-test", expect_rotation=False)
        self.figures["self_test"] = 0 if any(f.startswith("self-test") for f in self.failures) else 1

    def scan_outputs(self):
        """No secret the campaign saw may appear in anything captured."""
        for path in self.outputs + [self.emu.log_path] + [s.log_path for s in (self.bao, self.moto) if s]:
            with open(path, errors="replace") as f:
                text = f.read()
            if self.scanner.found_in(text):
                self.fail(f"a secret appears in {os.path.relpath(path, self.work)}")
        self.figures["outputs_scanned"] = len(self.outputs) + 1
        self.figures["secrets_known"] = len(self.scanner)

    def report(self):
        f = self.figures
        faults = sum(self.emu_faults.values()) + f["sigkills"] + f["backend_restarts"] + \
            f["backend_freezes"] + f["emulator_restarts"]
        by_kind = ", ".join(f"{k} {v}" for k, v in sorted(self.emu_faults.items()))
        self.say(f"emulator faults injected: {by_kind or 'none'}")
        self.say(f"figures: {json.dumps(dict(f, faults_injected=faults, failures=len(self.failures)))}")
        self.say(f"campaign: seed {self.seed}, {f['scenarios']} scenarios ({f['kill_scenarios']} kill-and-recover, "
                 f"{f['sigkills']} SIGKILLs; {f['concurrent_trials']} concurrent trials; {f['twin_trials']} twin, "
                 f"{f['forged_records']} forged, {f['stalled_runs']} stalled ({f['stalls_fenced']} fenced), "
                 f"{f['prune_trials']} prune, {f['panics']} panic, {f['drain_trials']} drain), "
                 f"{faults} faults injected, {f['slots_checked']} slots checked, foreign clients deleted: "
                 f"{f['foreign_deleted']}, live pairs killed: {f['live_pairs_killed']}, clients in use "
                 f"deleted: {f['used_deleted']} of {f['drain_used']}, failures: {len(self.failures)}")
        return 1 if self.failures else 0


def wait_stopped(p, timeout):
    """True once p is stopped (state T, it SIGSTOPped itself); False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return False
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("T", "t"):
            return True
        time.sleep(0.02)
    return False


def scrub(text, scanner):
    """A message for the log with any known secret cut out (harness errors may quote data)."""
    for m in SecretScanner.RUN.finditer(text):
        if scanner.found_in(m.group(0)):
            text = text.replace(m.group(0), "[redacted]")
    return text[:500]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="the CI form (default)")
    mode.add_argument("--full", action="store_true", help="the figures in RELIABILITY.md")
    ap.add_argument("--seed", type=int, help="replay a campaign (default: random, printed)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "rekey"),
                    help="the rekey binary, built with --features test-hooks (default target/debug/rekey)")
    ap.add_argument("--backends", help="comma-separated subset of file,vault,aws")
    ap.add_argument("--kill", type=int, help="kill scenarios per world (overrides the plan)")
    ap.add_argument("--scenarios", help="comma-separated subset of the scenario kinds (e.g. twin,stall)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (it holds secrets)")
    args = ap.parse_args()
    c = Campaign(args)
    code = 1
    try:
        code = c.run()
    finally:
        try:
            c.stop()
        finally:
            if not args.keep:
                shutil.rmtree(c.work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
