#!/usr/bin/env python3
"""Render an nginx `upstream` block from rune's endpoints key, and again on every change.

rune's controller keeps `<prefix>/endpoints/<ns>/<svc>` listing the service's ready
instances (node address and ports). This follows it with etcdctl (ETCDCTL_ENDPOINTS
and the other ETCDCTL_* variables say where etcd is) and writes the upstream block
to OUTPUT (atomically: a temporary file renamed over it), or prints it.

usage: upstreams.py [--once] [--prefix /rune] [--port NAME] [--exec CMD] NS/SERVICE [OUTPUT]

  --once      render what the key holds now and exit
  --port      the port name to use (default: each endpoint's first port)
  --exec      a command to run after each render, e.g. 'nginx -s reload'
"""

import argparse
import base64
import json
import os
import signal
import subprocess
import sys


def render(service, doc, port):
    """The upstream block for an endpoints document (None: no key yet)."""
    lines = [f"upstream {service} {{"]
    servers = []
    for e in (doc or {}).get("endpoints", []):
        ports = e.get("ports", {})
        p = ports.get(port) if port else next(iter(sorted(ports.items())), (None, None))[1]
        if p is None:
            continue
        host = f"[{e['address']}]" if ":" in e["address"] else e["address"]
        servers.append(f"    server {host}:{p};  # {e['instance']} on {e['node']}")
    if not servers:
        # nginx wants at least one server: one that is never used.
        servers.append("    server 127.0.0.1:9 down;  # no ready instance")
    lines += servers + ["}", ""]
    return "\n".join(lines)


def write(text, output, command):
    if output:
        tmp = f"{output}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, output)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if command:
        subprocess.run(command, shell=True, check=False)


def current(key):
    """The key's document (None when absent) and the etcd revision it was read at."""
    out = subprocess.run(["etcdctl", "get", key, "-w", "json"],
                         check=True, capture_output=True, text=True).stdout
    reply = json.loads(out)
    kvs = reply.get("kvs") or []
    doc = json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None
    return doc, int(reply["header"]["revision"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("service", metavar="NS/SERVICE")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--prefix", default=os.environ.get("RUNE_ETCD_PREFIX", "/rune"))
    ap.add_argument("--port")
    ap.add_argument("--exec", dest="command")
    ap.add_argument("--once", action="store_true")
    a = ap.parse_args()
    ns, _, name = a.service.partition("/")
    key = f"{a.prefix.rstrip('/')}/endpoints/{ns}/{name}"

    doc, revision = current(key)
    write(render(name, doc, a.port), a.output, a.command)
    if a.once:
        return
    # Every change after the read: `etcdctl watch` prints event, key, value lines.
    watch = subprocess.Popen(["etcdctl", "watch", key, f"--rev={revision + 1}"],
                             stdout=subprocess.PIPE, text=True)

    def stop(*_):
        # The watch goes with us (it would hold our stdout and stderr open).
        watch.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        event = watch.stdout.readline()
        if not event:
            sys.exit(f"etcdctl watch ended ({watch.wait()})")
        watch.stdout.readline()  # the key
        value = watch.stdout.readline().strip()
        doc = json.loads(value) if event.strip() == "PUT" and value else None
        write(render(name, doc, a.port), a.output, a.command)


if __name__ == "__main__":
    main()
