#!/usr/bin/env bash
# `make run`: a whole rune system on this machine — etcd, rune-controller and one
# rune-agent — with the example services from manifests/, and one scale operation to
# watch. Stays in the foreground with the logs; Ctrl-C stops everything it started
# (instances included) and keeps etcd's data in .run/ so the next `make run` resumes.
#
# Settings (environment): RUNE_RUN_DIR (default .run), RUNE_RUN_ETCD_PORT (2379),
# RUNE_RUN_ETCD_PEER_PORT (the client port + 1),
# RUNE_RUN_CONTROLLER_LISTEN (127.0.0.1:9464), RUNE_RUN_AGENT_LISTEN (127.0.0.1:9465),
# RUNE_RUN_NO_DEMO=1 skips the demo scale, RUNE_RUN_PROFILE=release builds optimised,
# RUNE_RUN_SKIP_BUILD=1 uses the binaries already in target/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run_dir=${RUNE_RUN_DIR:-$root/.run}
port=${RUNE_RUN_ETCD_PORT:-2379}
peer_port=${RUNE_RUN_ETCD_PEER_PORT:-$((port + 1))}
profile=${RUNE_RUN_PROFILE:-debug}
mkdir -p "$run_dir/logs"
run_dir=$(cd "$run_dir" && pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# One `make run` at a time: a second one says so instead of fighting over ports.
lock="$run_dir/run.pid"
if [ -f "$lock" ] && kill -0 "$(cat "$lock")" 2>/dev/null; then
  echo "rune is already running here (make run, pid $(cat "$lock")); stop it with Ctrl-C in its terminal" >&2
  echo "or use it: target/$profile/rune get services" >&2
  exit 1
fi
echo $$ > "$lock"

if ! command -v etcd >/dev/null; then
  echo "etcd is not installed: run 'make deps' as root, or install Debian's etcd-server" >&2
  exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is taken by something else (another etcd?); set RUNE_RUN_ETCD_PORT" >&2
  rm -f "$lock"
  exit 1
fi

if [ -z "${RUNE_RUN_SKIP_BUILD:-}" ]; then
  say "building rune ($profile; the first build takes a few minutes)"
  if [ "$profile" = release ]; then cargo build --release --bins -q; else cargo build --bins -q; fi
fi
bin="$root/target/$profile"

pids=()
cleanup() {
  # Once stopping, a second Ctrl-C (or a SIGTERM racing the exit) must not cut the
  # cleanup short and leave daemons running: ignore them until it is done.
  trap '' INT TERM
  trap - EXIT
  # Whatever happens to stdout, the daemons are stopped: with `make run | tee log`,
  # Ctrl-C ends tee first, and a write to the dead pipe must neither kill this
  # script (SIGPIPE) nor end it early (set -e on a failed echo).
  trap '' PIPE
  set +e
  echo
  say "stopping: controller, agent (and its instances), etcd; data stays in $run_dir"
  # The agent stops every instance before it exits (--stop-instances-on-exit).
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null
  rm -f "$lock"
  say "stopped"
}
trap cleanup INT TERM EXIT

export RUNE_ETCD_ENDPOINTS="http://127.0.0.1:$port"
export RUNE_ETCD_PREFIX=/rune

say "starting etcd on 127.0.0.1:$port (data: $run_dir/etcd)"
# Each daemon in its own session: Ctrl-C reaches only this script, which stops them
# in order (etcd last, so the agent can still report its instances stopped).
setsid etcd --name rune-local --data-dir "$run_dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "rune-local=http://127.0.0.1:$peer_port" --log-level error \
  >"$run_dir/logs/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$RUNE_ETCD_ENDPOINTS" --dial-timeout=1s endpoint health >/dev/null 2>&1 && break
  kill -0 "$etcd_pid" 2>/dev/null || { echo "etcd failed to start; see $run_dir/logs/etcd.log" >&2; exit 1; }
  sleep 0.2
done

say "starting rune-controller and rune-agent (node: local)"
setsid "$bin/rune-controller" --listen "${RUNE_RUN_CONTROLLER_LISTEN:-127.0.0.1:9464}" --lease-duration 5s --renew-deadline 3s --retry-period 1s \
  >"$run_dir/logs/controller.log" 2>&1 &
controller_pid=$!
# --node-ip: the example services listen on loopback, so that is where endpoints/ points.
setsid "$bin/rune-agent" --node-name local --data-dir "$run_dir/agent" --files-dir "$run_dir/files" --listen "${RUNE_RUN_AGENT_LISTEN:-127.0.0.1:9465}" \
  --node-ip 127.0.0.1 --stop-instances-on-exit >"$run_dir/logs/agent.log" 2>&1 &
agent_pid=$!
# Stopped in this order by cleanup: the controller first (so it does not replace the
# instances the agent is about to stop), then the agent (stops the instances), etcd.
pids=("$controller_pid" "$agent_pid" "$etcd_pid")

say "casting the example services"
"$bin/rune" cast manifests/web.yaml manifests/workers.yaml

if [ -z "${RUNE_RUN_NO_DEMO:-}" ]; then
  say "scaling web to 3 (watch the operation)"
  "$bin/rune" scale web 3 || true
  "$bin/rune" get services
fi

cat <<MSG

rune is running. In another terminal (the binaries are in target/$profile):

  export PATH="$bin:\$PATH"
  rune get services                      # desired / ready / current
  rune get instances                     # pids, ports, phases
  rune scale web 5                       # immediate, waits until ready
  rune scale workers 8 --mode=gradual --step=2 --interval=5s
  rune cast manifests/flaky.yaml && rune scale flaky 4   # fails on purpose: rolled back to 2
  rune restart web
  rune history web

Logs: $run_dir/logs (controller.log, agent.log, etcd.log). Ctrl-C stops everything.

MSG
echo "rune ready: etcd $RUNE_ETCD_ENDPOINTS"
tail -n 0 -F "$run_dir/logs/controller.log" "$run_dir/logs/agent.log" &
tail_pid=$!
wait "$tail_pid" || true
