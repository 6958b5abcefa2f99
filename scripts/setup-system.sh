#!/usr/bin/env bash
# System tools the tests need: the Prometheus server and promtool (Debian `prometheus`) and the
# Pushgateway (Debian `prometheus-pushgateway`) for the observability and alert tests; the `age` CLI (Debian `age`),
# which the fault campaign reads the file backend with. Idempotent: does nothing when all exist. The
# packages' services are stopped and disabled again: the tests start their own on 127.0.0.1.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
if have prometheus && have promtool && have prometheus-pushgateway && have age; then
    exit 0
fi
cmd="apt-get update && apt-get install -y --no-install-recommends prometheus prometheus-pushgateway age"
if [ "$(id -u)" != 0 ]; then
    echo "rekey: prometheus, promtool, prometheus-pushgateway or age is missing; install them as root with:" >&2
    echo "  $cmd" >&2
    exit 1
fi
# Keep the packages' services from starting (policy-rc.d 101 = "action forbidden").
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ -n "$created_policy" ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway age >/dev/null
for svc in prometheus prometheus-pushgateway prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$svc" >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
have prometheus && have promtool && have prometheus-pushgateway && have age
