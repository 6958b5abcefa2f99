#!/usr/bin/env python3
"""A webhook receiver that restarts a Deployment when rekey rotates the slot it reads.

    receiver.py --listen 0.0.0.0:8080 --namespace apps --path-secret-file /etc/hook/path \\
        alpha=web beta=worker

On a `rotated` event for slot `alpha` it runs `kubectl rollout restart deployment/web
--namespace apps`, so the pods start again and read the new pair. It takes rekey's `generic` and
`cloudevents` formats (`--webhook-format`); every other event is answered 200 and ignored.

rekey does not sign its webhooks, so the endpoint is protected by a secret in its path: rekey
posts to `http://HOST:8080/hooks/<secret>` (give that URL to rekey as REKEY_WEBHOOK_URL from a
Kubernetes Secret; rekey never logs a webhook's path), and any other path gets 404. Keep the
Service cluster-internal and allow only rekey's pods in a NetworkPolicy.

Answers: 200 done or ignored; 400 not JSON; 404 wrong path; 500 kubectl failed (rekey retries
5xx, so a failed restart is tried again). A retried delivery carries the same event id and is
not restarted twice. Standard library only; `kubectl` must be on PATH with RBAC to patch the
Deployments (verbs get, patch on deployments.apps).
"""

import argparse
import collections
import hmac
import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT (port 0: any free one)")
    p.add_argument("--namespace", required=True, help="the namespace of the Deployments")
    p.add_argument(
        "--path-secret-file",
        required=True,
        help="a file holding the secret path segment rekey's webhook URL ends with",
    )
    p.add_argument("slots", nargs="+", metavar="SLOT=DEPLOYMENT")
    args = p.parse_args(argv)
    args.deployments = {}
    for pair in args.slots:
        slot, sep, deployment = pair.partition("=")
        if not sep or not slot or not deployment:
            p.error(f"{pair!r} is not SLOT=DEPLOYMENT")
        args.deployments[slot] = deployment
    with open(args.path_secret_file) as f:
        args.path = "/hooks/" + f.read().strip()
    return args


def rotated_slot(body):
    """The slot of a `rotated` event, in either format, or None for any other event."""
    if body.get("specversion") == "1.0":  # CloudEvents structured mode: the notice is `data`
        if body.get("type") != "io.rekey.credential.rotated":
            return None
        return (body.get("data") or {}).get("slot")
    return body.get("slot") if body.get("event") == "rotated" else None


def handler(args):
    # The ids of the last events handled (a retried delivery repeats its id), bounded.
    seen = collections.deque(maxlen=1000)

    class Handler(BaseHTTPRequestHandler):
        def answer(self, code, text):
            data = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            # Constant time: the path is the credential.
            if not hmac.compare_digest(self.path.encode(), args.path.encode()):
                return self.answer(404, "not found")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                return self.answer(400, "not JSON")
            slot = rotated_slot(body)
            deployment = args.deployments.get(slot)
            if deployment is None:
                return self.answer(200, "ignored")
            event_id = body.get("id") or (body.get("data") or {}).get("id")
            if event_id and event_id in seen:
                return self.answer(200, "already done")
            argv = ["kubectl", "rollout", "restart", f"deployment/{deployment}",
                    "--namespace", args.namespace]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"kubectl failed ({done.returncode}): {done.stderr.strip()}", file=sys.stderr)
                return self.answer(500, "restart failed")
            if event_id:
                seen.append(event_id)
            print(f"slot {slot} rotated: restarted deployment/{deployment}", file=sys.stderr)
            return self.answer(200, "restarted")

        def do_GET(self):
            if self.path == "/healthz":
                return self.answer(200, "ok")
            return self.answer(404, "not found")

        def log_message(self, fmt, *a):
            # The default access log prints the path, which is the secret.
            pass

    return Handler


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), handler(args))
    # The bound address first, on stdout (port 0 picks one).
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
