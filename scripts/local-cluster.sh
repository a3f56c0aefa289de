#!/usr/bin/env bash
# A local 3-member cluster on 127.0.0.1, for trying etcdx (or etcd) as a cluster by hand.
#
#   scripts/local-cluster.sh [start]   start m1, m2, m3 in the background and wait until healthy
#   scripts/local-cluster.sh stop      stop them (SIGTERM, then SIGKILL after 10 s)
#   scripts/local-cluster.sh status    which members run, and `etcdctl endpoint status` if they do
#   scripts/local-cluster.sh clean     stop them and delete ./local-cluster
#
#   member  client URL              peer URL
#   m1      http://127.0.0.1:2379   http://127.0.0.1:2380
#   m2      http://127.0.0.1:22379  http://127.0.0.1:22380
#   m3      http://127.0.0.1:32379  http://127.0.0.1:32380
#
# Data dirs (m1.etcd ...), logs (m1.log ...) and pid files live in ./local-cluster/
# (LOCAL_CLUSTER_DIR overrides it).  Starting again reuses the data dirs: the members
# restart with their data, as etcd does (the --initial-* flags only matter the first time).
#
# Environment:
#   ETCDX_BIN              the server command, default `etcdx`; e.g. ETCDX_BIN=/usr/bin/etcd to compare
#                          with the real etcd, or ETCDX_BIN="python3 -m etcdx.main" from a checkout
#   ETCDCTL                etcdctl to wait with and to print, default `etcdctl`
#   LOCAL_CLUSTER_DIR      default ./local-cluster
#   LOCAL_CLUSTER_TIMEOUT  seconds to wait for a healthy cluster, default 60
#   LOCAL_CLUSTER_ARGS     extra flags for every member, e.g. "--heartbeat-interval 50 --election-timeout 500"
#
# The same cluster under goreman (foreground, one terminal): see ./Procfile.
set -euo pipefail

read -r -a SERVER <<<"${ETCDX_BIN:-etcdx}"
ETCDCTL="${ETCDCTL:-etcdctl}"
DIR="${LOCAL_CLUSTER_DIR:-./local-cluster}"
TIMEOUT="${LOCAL_CLUSTER_TIMEOUT:-60}"
read -r -a EXTRA <<<"${LOCAL_CLUSTER_ARGS:-}"

NAMES=(m1 m2 m3)
CLIENT_PORTS=(2379 22379 32379)
PEER_PORTS=(2380 22380 32380)
TOKEN=local-cluster
INITIAL_CLUSTER="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
ENDPOINTS="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"

pid_of() { # the pid of member $1 if it is running, else nothing
  local f="$DIR/$1.pid"
  [[ -f $f ]] && kill -0 "$(<"$f")" 2>/dev/null && cat "$f"
  return 0
}

have_etcdctl() { command -v "$ETCDCTL" >/dev/null 2>&1; }

ctl() { ETCDCTL_API=3 "$ETCDCTL" --endpoints="$ENDPOINTS" --dial-timeout=2s --command-timeout=5s "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

healthy() {
  if have_etcdctl; then
    ctl endpoint health >/dev/null 2>&1
  else # without etcdctl: every client port accepts connections
    local p
    for p in "${CLIENT_PORTS[@]}"; do port_open "$p" || return 1; done
  fi
}

start() {
  if ! command -v "${SERVER[0]}" >/dev/null 2>&1; then
    echo "server command not found: ${SERVER[0]} (set ETCDX_BIN)" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  local i name pid running=()
  for name in "${NAMES[@]}"; do
    pid=$(pid_of "$name")
    [[ -n $pid ]] && running+=("$name (pid $pid)")
  done
  if ((${#running[@]})); then
    echo "already running: ${running[*]}; '$0 stop' first" >&2
    exit 1
  fi
  for i in 0 1 2; do
    for p in "${CLIENT_PORTS[i]}" "${PEER_PORTS[i]}"; do
      if port_open "$p"; then
        echo "port $p on 127.0.0.1 is taken by another process" >&2
        exit 1
      fi
    done
  done
  for i in 0 1 2; do
    name=${NAMES[i]}
    local client="http://127.0.0.1:${CLIENT_PORTS[i]}" peer="http://127.0.0.1:${PEER_PORTS[i]}"
    local cmd=("${SERVER[@]}" --name "$name" --data-dir "$DIR/$name.etcd"
      --listen-client-urls "$client" --advertise-client-urls "$client"
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
      --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state new --initial-cluster-token "$TOKEN"
      "${EXTRA[@]}")
    printf '===== %s %s\n' "$(date -u +%FT%TZ)" "${cmd[*]}" >>"$DIR/$name.log"
    # its own session: a Ctrl-C or hangup of this terminal does not reach the members
    setsid "${cmd[@]}" >>"$DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name.pid"
  done

  local deadline=$((SECONDS + TIMEOUT))
  until healthy; do
    for name in "${NAMES[@]}"; do
      if [[ -z $(pid_of "$name") ]]; then
        echo "$name exited; last lines of $DIR/$name.log:" >&2
        tail -n 20 "$DIR/$name.log" >&2
        stop >&2
        exit 1
      fi
    done
    if ((SECONDS >= deadline)); then
      echo "not healthy after ${TIMEOUT}s; logs in $DIR/m*.log (members left running; '$0 stop')" >&2
      exit 1
    fi
    sleep 0.2
  done

  echo "3 members up (${SERVER[*]}):"
  for i in 0 1 2; do
    name=${NAMES[i]}
    printf '  %s  pid %-7s client http://127.0.0.1:%-5s  peer http://127.0.0.1:%-5s  log %s\n' \
      "$name" "$(pid_of "$name")" "${CLIENT_PORTS[i]}" "${PEER_PORTS[i]}" "$DIR/$name.log"
  done
  echo
  echo "Talk to it:"
  echo "  ETCDCTL_API=3 etcdctl --endpoints=$ENDPOINTS member list -w table"
  echo "  ETCDCTL_API=3 etcdctl --endpoints=$ENDPOINTS endpoint status -w table"
  echo "Stop it:"
  echo "  $0 stop"
}

stop() {
  local name pid pids=()
  for name in "${NAMES[@]}"; do
    pid=$(pid_of "$name")
    if [[ -n $pid ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      echo "stopping $name (pid $pid)"
    fi
    rm -f "$DIR/$name.pid"
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
  ((${#pids[@]})) || echo "no member running"
}

status() {
  local name pid any=0
  for name in "${NAMES[@]}"; do
    pid=$(pid_of "$name")
    if [[ -n $pid ]]; then
      echo "$name: running, pid $pid"
      any=1
    else
      echo "$name: not running"
    fi
  done
  if ((any)) && have_etcdctl; then
    ctl endpoint status -w table || true
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  clean)
    stop
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: $0 [start|stop|status|clean]" >&2
    exit 2
    ;;
esac
