#!/usr/bin/env bash
# Records a terminal transcript of `rekey apply` over 200 slots against the emulator, in a real
# terminal (tmux): one capture while the progress bar runs, one of the final summary.
# Usage: scripts/transcript.sh [OUT]   (default docs/transcripts/apply-200-slots.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/transcripts/apply-200-slots.txt}
command -v tmux >/dev/null || { echo "needs tmux (apt-get install -y tmux)" >&2; exit 1; }
cargo build --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/rekey
work=$(mktemp -d)
session=rekey-transcript-$$
emu_pid=
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin_id=transcriptadmin0000000000000001
export TRANSCRIPT_ADMIN_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 64)
printf '%s' "$admin_id" > "$work/boot.id"
printf '%s' "$TRANSCRIPT_ADMIN_SECRET" > "$work/boot.secret"
chmod 600 "$work"/boot.*
"$bin" emulator --listen "127.0.0.1:$port" --bootstrap "11772:$admin_id:TRANSCRIPT_ADMIN_SECRET" \
    --latency-ms 15 --latency-jitter-ms 30 >"$work/emulator.log" 2>&1 &
emu_pid=$!
for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$port/_emulator/tenants/11772/clients" >/dev/null 2>&1 && break
    sleep 0.05
done
"$bin" keygen -o "$work/rekey.key" >/dev/null 2>&1
{
    printf '[settings]\nverify_delay = "50ms"\nconcurrency = 8\n\n[defaults]\nbackend = "local"\n\n'
    printf '[backends.local]\ntype = "file"\npath = "store"\nidentity = { file = "rekey.key" }\n\n'
    printf '[providers.taegis-us1]\ntype = "taegis"\nurl = "http://127.0.0.1:%s"\ntenant = "11772"\nrate_limit = 1000\n' "$port"
    printf 'bootstrap = { client_id = { file = "boot.id" }, client_secret = { file = "boot.secret" } }\n'
    for i in $(seq -w 1 200); do
        printf '\n[[slots]]\nname = "siem-ingest-%s"\nprovider = "taegis-us1"\n' "$i"
    done
} > "$work/inventory.toml"

tmux new-session -d -s "$session" -x 150 -y 40 -c "$work" \
    "TERM=xterm-256color $bin apply -c inventory.toml; echo '[rekey exited]'; sleep 600"
mid=
for _ in $(seq 1 600); do
    pane=$(tmux capture-pane -p -t "$session")
    if [ -z "$mid" ] && grep -Eq "apply .* ([6-9][0-9]|1[0-4][0-9])/200 slots" <<<"$pane"; then
        mid=$pane
    fi
    grep -q "\[rekey exited\]" <<<"$pane" && break
    sleep 0.1
done
final=$(tmux capture-pane -p -t "$session")
tmux capture-pane -p -e -t "$session" > "${out%.txt}.ansi"
mkdir -p "$(dirname "$out")"
{
    echo "# rekey apply over 200 slots against the emulator, in tmux (150x40)."
    echo "# Recorded by scripts/transcript.sh: the progress bar (stderr) while it runs, then the last"
    echo "# screen of the report. The same screen with its colours: ${out%.txt}.ansi (cat it)."
    echo
    echo "## while running"
    printf '%s\n' "${mid:-<progress bar not captured>}" | sed -e '/^$/d'
    echo
    echo "## at the end (last lines of the report)"
    printf '%s\n' "$final" | sed -e '/^$/d'
} > "$out"
if grep -q "$TRANSCRIPT_ADMIN_SECRET" "$out" "${out%.txt}.ansi"; then
    echo "a secret appeared in the transcript" >&2
    exit 1
fi
echo "wrote $out"
