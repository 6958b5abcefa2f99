"""The benchmark's limits scenarios (issue 19; docs/src/scale.md), used by scripts/bench.py:

--shards N        the timed `apply --force` runs as N processes at once (`--shard i/N`), as a
                  Kubernetes Indexed Job runs them; with --rate-limit the emulator's own count
                  shows whether the shards together stayed within it.
--concurrency auto  rekey finds its concurrency; the range it chose is printed.
--cisco-budget B  a Cisco inventory whose work exceeds the hourly budget, run as --runs rounds
                  of --shards processes (each round right after the last, all within the hour):
                  prints what the emulator charged the org's budget against B - reserve.

    scripts/bench.sh --shards 4 --slots 1000 --rate-limit 50 --baseline-slots 0
    scripts/bench.sh --concurrency auto --slots 1000 --baseline-slots 0
    scripts/bench.sh --cisco-budget 400 --cisco-reserve 10% --slots 300 --runs 3 --shards 2
"""

import json
import os
import secrets
import subprocess
import sys
import time


def add_arguments(ap):
    ap.add_argument("--shards", type=int, default=1,
                    help="run the timed apply as N processes at once, --shard i/N (default 1)")
    ap.add_argument("--cisco-budget", type=int, default=None,
                    help="Cisco scenario: the org's hourly budget at the emulator and in the inventory")
    ap.add_argument("--cisco-reserve", default="10%",
                    help="hourly_budget_reserve for --cisco-budget: a count or a percent (default 10%%)")
    ap.add_argument("--runs", type=int, default=3,
                    help="--cisco-budget: rounds of --shards processes, one after another (default 3)")


class Together:
    """N processes measured as one: started at once, wall until the last ends, CPU summed,
    the largest peak RSS, the JSON rows merged, the worst exit code."""

    def __init__(self, runs, wall):
        self.runs = runs
        self.wall = wall
        self.code = max(r.code for r in runs)
        self.cpu = sum(r.cpu for r in runs)
        self.rss_mib = max(r.rss_mib for r in runs)
        self.stderr = "\n".join(r.stderr for r in runs)
        rows = []
        for r in runs:
            rows += json.loads(r.stdout)["rows"] if r.stdout.strip() else []
        self.stdout = json.dumps({"rows": rows})


def measured_shards(measured, cmd, shards, cwd, env):
    if shards <= 1:
        return measured(cmd, cwd, env)
    import threading
    runs = [None] * shards
    def one(i):
        runs[i] = measured(cmd + ["--shard", f"{i}/{shards}"], cwd, env)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(shards)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Together(runs, time.monotonic() - t0)


def auto_range(stderr):
    """The range `--concurrency auto` logged at the end of each apply."""
    found = [line for line in stderr.splitlines() if "auto concurrency:" in line and "slots at once (ended" in line]
    out = []
    for line in found:
        i = line.index("auto concurrency:")
        out.append(line[i + len("auto concurrency:"):].split('"')[0].strip())
    return out


def print_shards_and_auto(a, forced):
    if a.shards > 1:
        walls = ", ".join(f"{r.wall:.2f}" for r in forced.runs)
        print(f"  shards                {a.shards:9d}   (walls {walls} s; CPU summed, RSS the largest)")
    if a.auto:
        print(f"  auto concurrency      {'; '.join(auto_range(forced.stderr)) or '(not logged)'}")


def cisco_budget(a, binary, work, procs, bench):
    """Several rounds of processes against one Cisco org whose budget the work exceeds."""
    if a.runs < 1 or a.shards < 1 or a.cisco_budget < 10:
        sys.exit("bench: --runs and --shards must be positive, --cisco-budget at least 10")
    cid, pw = f"client-{secrets.token_hex(8)}", secrets.token_urlsafe(40)
    bench.write_private(os.path.join(work, "cboot.id"), cid)
    bench.write_private(os.path.join(work, "cboot.secret"), pw)
    org = "org-bench"
    seed = {"tenants": [], "orgs": [{"id": org, "clients": [
        {"client_id": cid, "password": pw, "name": "cisco-admin", "scopes": ["oauth", "enrich", "inspect"]}]}]}
    seed_path = os.path.join(work, "seed.json")
    bench.write_private(seed_path, json.dumps(seed))
    subprocess.run([binary, "keygen", "-o", "rekey.key"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = bench.free_port()
    url = f"http://127.0.0.1:{port}"
    procs.append(subprocess.Popen([binary, "emulator", "--listen", f"127.0.0.1:{port}", "--seed", seed_path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=bench.die_with_parent))
    bench.wait_until("the emulator", procs[-1], lambda: bench.http("GET", url + "/_emulator/stats"))
    reserve = a.cisco_reserve.strip()
    reserve_toml = f'"{reserve}"' if reserve.endswith("%") else reserve
    inv = ['[settings]\nverify_delay = "50ms"\n', '[defaults]\nbackend = "store"\n',
           '[backends.store]\ntype = "file"\npath = "store"\nidentity = { file = "rekey.key" }\n',
           f'[providers.cisco]\ntype = "cisco"\nurl = "{url}"\nrate_limit = 1000\n'
           f'org_hourly_budget = {a.cisco_budget}\nhourly_budget_reserve = {reserve_toml}\n'
           'bootstrap = { client_id = { file = "cboot.id" }, client_secret = { file = "cboot.secret" } }\n']
    for n in range(a.slots):
        inv.append(f'[[slots]]\nname = "c-{n:05d}"\nprovider = "cisco"\nscopes = ["enrich:read", "inspect:read"]\n')
    with open(os.path.join(work, "inventory.toml"), "w") as f:
        f.write("\n".join(inv))
    if reserve.endswith("%"):
        allowed = a.cisco_budget - -(-a.cisco_budget * int(reserve[:-1]) // 100)
    else:
        allowed = a.cisco_budget - int(reserve)
    bench.http("PUT", url + "/_emulator/faults", {"latency_ms": a.latency_ms, "cisco_hourly_budget": a.cisco_budget})
    env = dict(os.environ, RUST_LOG="warn")
    cmd = [binary, "apply", "-c", "inventory.toml", "--output", "json", "-q"]
    print(f"rekey Cisco hourly budget: {a.slots} slots, org budget {a.cisco_budget}, reserve {reserve} "
          f"(rekey may use {allowed}), {a.runs} rounds of {a.shards} process(es), latency {a.latency_ms} ms")
    t0 = time.monotonic()
    for r in range(a.runs):
        run = measured_shards(bench.Measured, cmd, a.shards, work, env)
        rows = json.loads(run.stdout)["rows"]
        count = lambda what: sum(1 for o in rows if o["result"] == what)
        stats = bench.http("GET", url + "/_emulator/stats")
        print(f"  round {r + 1}: {time.monotonic() - t0:6.1f} s in, exit {run.code}, {count('ok')} ok, "
              f"{count('skipped')} deferred, {count('failed')} failed; org charged "
              f"{stats.get('cisco_org_requests', {}).get(org, 0)} so far")
    stats = bench.http("GET", url + "/_emulator/stats")
    charged = stats.get("cisco_org_requests", {}).get(org, 0)
    print(f"  org charged           {charged:9d}   of budget {a.cisco_budget} - reserve = {allowed} "
          f"({charged / allowed:.1%}); 429s served {stats.get('rate_limited', 0)}")
    if charged > allowed:
        print(f"OVERSPENT: {charged} > {allowed}")
        sys.exit(1)
