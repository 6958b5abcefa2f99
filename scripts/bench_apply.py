#!/usr/bin/env python3
"""Times `rekey apply` over many slots against the emulator, from one run.

Starts `rekey emulator` on a free loopback port with a per-request latency, writes an inventory
of SLOTS slots over TENANTS tenants (file backend, generated identity and bootstrap secrets),
runs a first apply (creates everything), then times `apply --force` (rotates everything) and
prints wall time, slots per second, provider calls per slot, peak RSS and CPU time.

    scripts/bench_apply.py --slots 1000 --tenants 50 --latency-ms 20

Uses the release binary (built first with `cargo build --release`). Stops by itself.
"""
import argparse, json, os, resource, secrets, socket, string, subprocess, sys, tempfile, time, urllib.request

ADMIN = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alnum(n):
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def stats(url):
    with urllib.request.urlopen(url + "/_emulator/stats", timeout=10) as r:
        return json.load(r)


def calls(s):
    return sum(v for k, v in s["requests"].items())


def timed(cmd, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p, wall, cpu, after.ru_maxrss  # ru_maxrss: KiB, max over children so far


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate-limit", type=float, default=10000, help="rekey's own per-environment limit (req/s)")
    ap.add_argument("--strategy", default="alternate", choices=["alternate", "in-place"])
    ap.add_argument("--binary", default="target/release/rekey")
    a = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.join(root, a.binary)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: run `cargo build --release` first")

    with tempfile.TemporaryDirectory(prefix="rekey-bench-") as work:
        tenants = [str(20000 + i) for i in range(a.tenants)]
        seed = {"tenants": []}
        for i, t in enumerate(tenants):
            cid, sec = alnum(32), secrets.token_urlsafe(48)
            for name, val in ((f"boot-{i}.id", cid), (f"boot-{i}.secret", sec)):
                fd = os.open(os.path.join(work, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, val.encode()); os.close(fd)
            seed["tenants"].append({"id": t, "clients": [{"client_id": cid, "secret": sec, "name": f"admin-{i}", "roles": [ADMIN]}]})
        seed_path = os.path.join(work, "seed.json")
        fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, json.dumps(seed).encode()); os.close(fd)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        emu = subprocess.Popen([binary, "emulator", "--listen", f"127.0.0.1:{port}", "--seed", seed_path,
                                "--latency-ms", str(a.latency_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    stats(url); break
                except OSError:
                    if time.monotonic() > deadline or emu.poll() is not None:
                        sys.exit("the emulator did not start")
                    time.sleep(0.05)
            subprocess.run([binary, "keygen", "-o", "rekey.key"], cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            inv = [f'[settings]\nconcurrency = {a.concurrency}\nverify_delay = "100ms"\n',
                   '[defaults]\nbackend = "local"\n',
                   '[backends.local]\ntype = "file"\npath = "store"\nidentity = { file = "rekey.key" }\n']
            for i, t in enumerate(tenants):
                inv.append(f'[providers.p{i}]\ntype = "taegis"\nurl = "{url}"\ntenant = "{t}"\nrate_limit = {a.rate_limit}\n'
                           f'bootstrap = {{ client_id = {{ file = "boot-{i}.id" }}, client_secret = {{ file = "boot-{i}.secret" }} }}\n')
            for n in range(a.slots):
                inv.append(f'[[slots]]\nname = "slot-{n:05d}"\nprovider = "p{n % a.tenants}"\nstrategy = "{a.strategy}"\n')
            with open(os.path.join(work, "inventory.toml"), "w") as f:
                f.write("\n".join(inv))

            cmd = [binary, "apply", "-c", "inventory.toml", "--output", "json", "-q"]
            p, wall0, _, _ = timed(cmd, work)
            if p.returncode != 0:
                sys.exit(f"first apply failed ({p.returncode}): {p.stderr[-2000:]}")
            c0 = calls(stats(url))
            p, wall, cpu, rss = timed(cmd + ["--force"], work)
            if p.returncode != 0:
                sys.exit(f"forced apply failed ({p.returncode}): {p.stderr[-2000:]}")
            c1 = calls(stats(url))
            rotated = sum(1 for o in json.loads(p.stdout) if any(x.startswith("promoted") for x in o["actions"]))
        finally:
            emu.terminate(); emu.wait(timeout=10)

    print(f"rekey apply --force: {a.slots} slots over {a.tenants} tenants, {a.strategy}, latency {a.latency_ms} ms, concurrency {a.concurrency}")
    print(f"  first apply (create):  {wall0:8.2f} s")
    print(f"  forced rotation wall:  {wall:8.2f} s   ({rotated} slots rotated)")
    print(f"  slots per second:      {a.slots / wall:8.1f}")
    print(f"  provider calls/slot:   {(c1 - c0) / a.slots:8.2f}")
    print(f"  CPU time (user+sys):   {cpu:8.2f} s")
    print(f"  peak RSS:              {rss / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
