#!/usr/bin/env bash
# A kvstash fleet on one machine: N instances on loopback ports, a 3-master Redis Cluster as their
# shared tier, and HAProxy in front with session affinity (deploy/haproxy.cfg).
#
#   deploy/fleet.sh start DIR -m MODEL [options] [-- extra server arguments]
#   deploy/fleet.sh stop DIR          stops everything it started, then checks nothing is left
#   deploy/fleet.sh drain DIR I       SIGTERM instance I: it turns not ready, finishes its requests,
#                                     stores its live states (to Redis too) and exits
#   deploy/fleet.sh kill DIR I        kill -9 instance I (1..N): a failure drill
#   deploy/fleet.sh status DIR        each instance's state as HAProxy sees it
#
# start options:
#   -m, --model PATH       GGUF model every instance loads (required)
#   -n, --instances N      instances (3)
#   --port P               HAProxy listens on 127.0.0.1:P (8080); instance I on P+I
#   --redis-port R         the cluster's nodes on R, R+1, R+2 (7001; bus ports +10000)
#   --redis none           no shared tier
#   --balance B            affinity (default) or roundrobin (for comparison)
#   --server S             kvstash (default) or llama-server (the same fleet around llama.cpp's)
#   --kvstash BIN          kvstash binary (default: build/kvstash beside this folder, else PATH)
#   --llama-server BIN     llama-server binary (default: PATH)
# DIR holds everything: fleet.env (ports and pids), each instance's log and disk cache, the
# Redis nodes' files, haproxy.cfg. start returns once HAProxy sees every instance up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "fleet: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (apt-get install $2)"; }

# Waits until `$@` succeeds, at most $timeout seconds.
wait_for() {
  local timeout=$1 what=$2; shift 2
  for ((i = 0; i < timeout * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what not up after ${timeout}s"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The instance's pid; its log when it died while starting.
check_started() {
  local pid=$1 log=$2
  alive "$pid" || { tail -n 20 "$log" >&2; die "an instance exited while starting: $log"; }
}

start_redis() {
  local dir=$1 port=$2 nodes=()
  need redis-server redis-server
  for ((k = 0; k < 3; k++)); do
    local p=$((port + k)) d="$dir/redis-$((port + k))"
    mkdir -p "$d"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$d" --daemonize yes \
      --pidfile "$d/redis.pid" --logfile "$d/redis.log" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$d/nodes.conf" \
      --maxmemory-policy allkeys-lru
    wait_for 10 "redis on port $p" redis-cli -p "$p" ping
    echo "REDIS_PID_$k=$(cat "$d/redis.pid")" >>"$dir/fleet.env"
    nodes+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/redis-create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $dir/redis-create.log"
  for ((k = 0; k < 3; k++)); do
    wait_for 20 "the Redis Cluster" sh -c "redis-cli -p $((port + k)) cluster info | grep -q cluster_state:ok"
  done
}

# The server lines between "# servers" and "# servers end" of each backend are this fleet's.
write_haproxy_cfg() {
  local dir=$1 port=$2 n=$3 balance=$4 lines_check="" lines_track=""
  for ((i = 1; i <= n; i++)); do
    lines_check+="    server inst$i 127.0.0.1:$((port + i))\n"
    lines_track+="    server inst$i 127.0.0.1:$((port + i)) track by_session/inst$i\n"
  done
  awk -v check="$lines_check" -v track="$lines_track" -v balance="$balance" '
    /^backend / { backend = $2 }
    /^    # servers$/ { print; printf "%s", (backend == "by_session" ? check : track); skip = 1; next }
    /^    # servers end$/ { skip = 0 }
    skip { next }
    balance == "roundrobin" && /^    balance hash/ { print "    balance roundrobin"; next }
    balance == "roundrobin" && /^    hash-type/ { next }
    { print }' "$here/haproxy.cfg" | sed 's/\\n/\n/g' >"$dir/haproxy.cfg"
}

start() {
  local dir=$1; shift
  local model="" n=3 port=8080 redis_port=7001 redis=cluster balance=affinity server=kvstash
  local kvstash="" llama_server=llama-server extra=()
  while [ $# -gt 0 ]; do
    case $1 in
      -m|--model) model=$2; shift 2 ;;
      -n|--instances) n=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --redis-port) redis_port=$2; shift 2 ;;
      --redis) redis=$2; shift 2 ;;
      --balance) balance=$2; shift 2 ;;
      --server) server=$2; shift 2 ;;
      --kvstash) kvstash=$2; shift 2 ;;
      --llama-server) llama_server=$2; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) die "unknown option $1 (see the top of $0)" ;;
    esac
  done
  [ -n "$model" ] || die "start needs -m MODEL"
  [ -f "$model" ] || die "no model at $model"
  case $balance in affinity|roundrobin) ;; *) die "--balance is affinity or roundrobin" ;; esac
  case $redis in cluster|none) ;; *) die "--redis is cluster or none" ;; esac
  if [ -z "$kvstash" ]; then
    kvstash=$here/../build/kvstash
    [ -x "$kvstash" ] || kvstash=$(command -v kvstash) || die "no kvstash binary (--kvstash)"
  fi
  need haproxy haproxy
  need curl curl
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/fleet.env" ] || die "$dir already holds a fleet (deploy/fleet.sh stop $dir)"
  echo "FRONT_PORT=$port INSTANCES=$n SERVER=$server BALANCE=$balance" >"$dir/fleet.env"
  # From here on, a failure stops what was started.
  trap '[ $? = 0 ] || stop "$dir" >/dev/null 2>&1' EXIT
  local remote=()
  if [ "$redis" = cluster ]; then
    start_redis "$dir" "$redis_port"
    remote=(--cache-remote "redis://127.0.0.1:$redis_port")
  fi
  local check=/ready
  for ((i = 1; i <= n; i++)); do
    local d="$dir/inst$i" p=$((port + i)) argv
    mkdir -p "$d"
    if [ "$server" = kvstash ]; then
      argv=("$kvstash" serve -m "$model" --host 127.0.0.1 --port "$p" --cache-dir "$d/cache"
            "${remote[@]}" --drain-seconds 30 "${extra[@]}")
    else
      check=/health  # llama-server's readiness: 503 while loading
      argv=("$llama_server" -m "$model" --host 127.0.0.1 --port "$p" --jinja -fa on --no-webui
            "${extra[@]}")
    fi
    printf '%q ' "${argv[@]}" >"$d/command"
    setsid "${argv[@]}" >"$d/server.log" 2>&1 </dev/null &
    echo "INST_PID_$i=$!" >>"$dir/fleet.env"
  done
  # shellcheck disable=SC1091
  . "$dir/fleet.env"
  for ((i = 1; i <= n; i++)); do
    local pid_var="INST_PID_$i"
    for ((t = 0; t < 6000; t++)); do
      curl -sf "http://127.0.0.1:$((port + i))$check" >/dev/null 2>&1 && break
      check_started "${!pid_var}" "$dir/inst$i/server.log"
      sleep 0.1
    done
    curl -sf "http://127.0.0.1:$((port + i))$check" >/dev/null || die "instance $i not ready"
  done
  write_haproxy_cfg "$dir" "$port" "$n" "$balance"
  KVSTASH_FLEET_DIR=$dir KVSTASH_FLEET_BIND=127.0.0.1:$port KVSTASH_FLEET_CHECK=$check \
    haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy rejected $dir/haproxy.cfg"
  KVSTASH_FLEET_DIR=$dir KVSTASH_FLEET_BIND=127.0.0.1:$port KVSTASH_FLEET_CHECK=$check \
    haproxy -D -p "$dir/haproxy.pid" -f "$dir/haproxy.cfg"
  echo "HAPROXY_PID=$(cat "$dir/haproxy.pid")" >>"$dir/fleet.env"
  wait_for 30 "HAProxy's view of the fleet" all_up "$dir" "$n"
  trap - EXIT
  echo "fleet: $n $server instances behind http://127.0.0.1:$port ($balance)${remote[*]:+, Redis Cluster on $redis_port}"
}

# HAProxy's state of each instance (by_session backend): "inst1 UP" ...
instance_states() {
  echo "show stat" | haproxy_cmd "$1" | awk -F, '$1 == "by_session" && $2 ~ /^inst/ { print $2, $18 }'
}

haproxy_cmd() {
  # No socat in a minimal Debian: bash's /dev/tcp does not do unix sockets, curl does not speak
  # the stats protocol, so use the python3 or perl that Debian has.
  perl -MIO::Socket::UNIX -e '
    my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "no socket\n";
    print $s join("", <STDIN>); $s->shutdown(1); print while <$s>;' "$1/haproxy.sock"
}

all_up() {
  local states
  states=$(instance_states "$1") || return 1
  [ "$(grep -c ' UP$' <<<"$states")" = "$2" ]
}

stop() {
  local dir=$1
  [ -f "$dir/fleet.env" ] || die "no fleet in $dir"
  local pids=()
  # shellcheck disable=SC2013
  for pid in $(grep -o '_PID[_0-9]*=[0-9]*' "$dir/fleet.env" | cut -d= -f2); do
    alive "$pid" && pids+=("$pid") && kill -TERM "$pid" 2>/dev/null || true
  done
  # Instances drain and store their live states (to Redis too): give them time.
  for ((t = 0; t < 900; t++)); do
    local left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    alive "$pid" && { echo "fleet: pid $pid did not stop: killed" >&2; kill -KILL "$pid"; }
  done
  rm -f "$dir/fleet.env" "$dir/haproxy.sock"
  echo "fleet: stopped (${#pids[@]} processes)"
}

# Sends `sig` to instance I; drain waits for its exit.
signal_instance() {
  local dir=$1 i=$2 sig=$3
  [ -f "$dir/fleet.env" ] || die "no fleet in $dir"
  . "$dir/fleet.env"
  local pid_var="INST_PID_$i"
  local pid=${!pid_var:-}
  [ -n "$pid" ] || die "no instance $i"
  kill "-$sig" "$pid"
  if [ "$sig" = TERM ]; then
    for ((t = 0; t < 1200; t++)); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && die "instance $i (pid $pid) still draining after 120 s"
    echo "fleet: instance $i (pid $pid) drained and stopped"
  else
    echo "fleet: instance $i (pid $pid) killed"
  fi
}

cmd=${1:-}
[ $# -ge 2 ] || die "usage: $0 start|stop|drain|kill|status DIR ..."
shift
case $cmd in
  start) start "$@" ;;
  stop) stop "$1" ;;
  kill) signal_instance "$1" "${2:?instance number}" KILL ;;
  drain) signal_instance "$1" "${2:?instance number}" TERM ;;
  status) instance_states "$1" ;;
  *) die "unknown command $cmd (start, stop, drain, kill, status)" ;;
esac
