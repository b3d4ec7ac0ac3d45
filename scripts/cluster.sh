#!/usr/bin/env bash
# A local Redis Cluster for boxoffice (make cluster / make stop-cluster): three
# masters and three replicas of the installed redis-server on 127.0.0.1, ports
# CLUSTER_PORT_BASE .. CLUSTER_PORT_BASE+5 (default 7000-7005; each node's
# cluster bus is its port + 10000). Nothing is kept on disk but each node's
# cluster config (nodes.conf) under .dev/cluster/<port>/. The URL to give
# boxoffice, in fred's form, is printed and written to .dev/cluster/env:
#
#   export REDIS_CLUSTER_URL='redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002'
#
#   scripts/cluster.sh [start]          start the cluster, or do nothing when it already
#                                       answers with cluster_state:ok on every node; a node
#                                       that is down (failover-kill) is started again and
#                                       rejoins as a replica
#   scripts/cluster.sh stop             shut every node down and remove the node configs
#   scripts/cluster.sh status           each node's role, state and slots; exit 1 unless ok
#   scripts/cluster.sh url              print the URL (the cluster need not be up)
#   scripts/cluster.sh masters          print the masters now, host:port,host:port (they move
#                                       with failovers; .dev/cluster/env has them as
#                                       REDIS_CLUSTER_NODES, as of the last start)
#   scripts/cluster.sh place ID...     deal the slots of these concerts ({c:<id>}) over the
#                                       masters, round-robin in the order given, moving a
#                                       slot (and its keys, MIGRATE) to its master where
#                                       it is elsewhere: a sale's lineup, spread evenly
#   scripts/cluster.sh move ID          move the slot of concert ID ({c:<id>}) to the next
#                                       master, keys and all; prints its port (a reshard
#                                       under load: tests/chaos.rs)
#   scripts/cluster.sh failover-kill PORT
#                                       kill -9 the master on PORT and wait until one of its
#                                       replicas is promoted and the cluster is ok again;
#                                       prints the new master's port (stdout, alone) and
#                                       how long the promotion took (stderr)
#
# cluster-node-timeout is short (CLUSTER_NODE_TIMEOUT, 2000 ms), so a killed
# master's replica takes over within a few seconds. CLUSTER_LAYOUT=interleaved
# deals the slots to the masters round-robin (slot s to master s mod 3) instead
# of redis-cli --cluster create's three contiguous ranges (stop the cluster
# first to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck disable=SC2034 # read by lib.sh's log
LOG_NAME=cluster

BASE=${CLUSTER_PORT_BASE:-7000}
NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT:-2000}
LAYOUT=${CLUSTER_LAYOUT:-create}
[[ $LAYOUT == create || $LAYOUT == interleaved ]] || die "CLUSTER_LAYOUT is create (the default) or interleaved, not $LAYOUT"
DIR=$ROOT/.dev/cluster
HOST=127.0.0.1
{ [[ $BASE =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1024 ] && [ "$BASE" -le 55529 ]; } ||
  die "CLUSTER_PORT_BASE must be a port from 1024 to 55529 (the bus ports are +10000), not $BASE"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done
URL="redis-cluster://$HOST:$BASE?node=$HOST:$((BASE + 1))&node=$HOST:$((BASE + 2))"

cli() { # cli PORT ARGS...: one command to one node, short timeouts, no retries
  timeout 5 redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null
}
answers() { [ "$(cli "$1" ping)" = PONG ]; }
info_field() { # info_field PORT FIELD: a field of CLUSTER INFO
  cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}

# A node is ours when it answers as a cluster node; anything else on the port
# is someone else's server, and we stop rather than take it over.
check_port_is_ours() {
  local out
  out=$(timeout 5 redis-cli -h "$HOST" -p "$1" cluster myid 2>&1) || true
  case "$out" in
    ''|*"Connection refused"*|*"Could not connect"*) return 0 ;;         # nothing there
    *"cluster support disabled"*|*ERR*|*NOAUTH*|*DENIED*)
      die "port $1 is taken by a server that is not a cluster node of ours; set CLUSTER_PORT_BASE" ;;
  esac
}

is_cluster_node() { [[ $(cli "$1" cluster myid) =~ ^[0-9a-f]{40}$ ]]; }

node_ok() { # node_ok PORT: the node sees the whole cluster, all slots served
  local info
  info=$(cli "$1" cluster info | tr -d '\r') || return 1
  grep -qx 'cluster_state:ok' <<<"$info" &&
    grep -qx 'cluster_slots_ok:16384' <<<"$info" &&
    grep -qx 'cluster_known_nodes:6' <<<"$info"
}

# Every node ok, three masters, each replica's link to its master up.
cluster_ok() {
  local p masters=0 role
  for p in "${PORTS[@]}"; do
    node_ok "$p" || return 1
    role=$(cli "$p" role | head -n 1)
    case "$role" in
      master) masters=$((masters + 1)) ;;
      slave) cli "$p" info replication | tr -d '\r' | grep -qx 'master_link_status:up' || return 1 ;;
      *) return 1 ;;
    esac
  done
  [ "$masters" = 3 ]
}

start_node() { # start_node PORT: with its nodes.conf if it has one (then it rejoins by itself)
  local p=$1 d=$DIR/$1
  mkdir -p "$d"
  log "starting node $p${2:+ ($2)}"
  # A replica's full sync leaves an RDB file behind: never load one (nothing is kept).
  rm -f "$d/dump.rdb"
  redis-server --port "$p" --bind "$HOST" --daemonize yes \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT" \
    --save "" --appendonly no \
    --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log" >/dev/null
  for _ in $(seq 50); do answers "$p" && return 0; sleep 0.1; done
  die "redis-server did not come up on port $p; see $d/redis.log"
}

wait_ok() { # wait_ok SECONDS
  local i
  for i in $(seq $(($1 * 10))); do
    cluster_ok && return 0
    sleep 0.1
  done
  return 1
}

# No persistence: a node's keys are disposable, so a layout that will not heal
# is wiped and created again.
reset_nodes() {
  local p
  log "resetting the nodes' cluster state"
  for p in "${PORTS[@]}"; do
    cli "$p" flushall >/dev/null || true
    cli "$p" cluster reset hard >/dev/null || true
  done
}

create() {
  if [ "$LAYOUT" = interleaved ]; then create_interleaved; return; fi
  local addrs=() p
  for p in "${PORTS[@]}"; do addrs+=("$HOST:$p"); done
  log "creating the cluster: masters ${PORTS[*]:0:3}, one replica each (${PORTS[*]:3:3})"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see $DIR/create.log"
}

# CLUSTER_LAYOUT=interleaved: slot s to master s mod 3 instead of three
# contiguous ranges, by hand (MEET, ADDSLOTS, REPLICATE), as `--cluster
# create` cannot. Which master a concert lands on is still its tag's CRC16;
# only the slot map differs (for sequential ids 1..30: 9/11/10 concerts per
# master here, 14/8/8 with contiguous ranges).
create_interleaved() {
  local i p id slots
  log "creating the cluster by hand: slots dealt round-robin to masters ${PORTS[*]:0:3}, one replica each (${PORTS[*]:3:3})"
  for i in 0 1 2 3 4 5; do cli "${PORTS[$i]}" cluster set-config-epoch $((i + 1)) >/dev/null; done
  for p in "${PORTS[@]:1}"; do cli "$p" cluster meet "$HOST" "${PORTS[0]}" >/dev/null; done
  for i in 0 1 2; do
    slots=$(seq "$i" 3 16383 | tr '\n' ' ')
    # shellcheck disable=SC2086 # one argument per slot
    [ "$(cli "${PORTS[$i]}" cluster addslots $slots)" = OK ] || die "CLUSTER ADDSLOTS failed on ${PORTS[$i]}"
  done
  for _ in $(seq 100); do
    local all=1
    for p in "${PORTS[@]}"; do [ "$(info_field "$p" cluster_known_nodes)" = 6 ] || { all=; break; }; done
    [ -n "$all" ] && break
    sleep 0.1
  done
  for i in 0 1 2; do
    id=$(cli "${PORTS[$i]}" cluster myid | tr -d '\r')
    for _ in $(seq 50); do
      [ "$(cli "${PORTS[$((i + 3))]}" cluster replicate "$id")" = OK ] && continue 2
      sleep 0.1
    done
    die "node ${PORTS[$((i + 3))]} would not replicate ${PORTS[$i]}"
  done
}

# The masters now (they move with failovers), as host:port,host:port.
masters() {
  local p
  for p in "${PORTS[@]}"; do
    answers "$p" || continue
    cli "$p" cluster nodes | tr -d '\r' |
      awk '$3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" && NF > 8 {split($2, a, "@"); print a[1]}' | sort -t: -k2 -n | paste -sd,
    return 0
  done
}

write_env() {
  mkdir -p "$DIR"
  {
    printf "export REDIS_CLUSTER_URL='%s'\n" "$URL"
    # For ../shared/conformance/contract.py, which cleans keys master by master.
    printf "export REDIS_CLUSTER_NODES='%s'\n" "$(masters)"
  } >"$DIR/env"
}

start() {
  { command -v redis-server && command -v redis-cli; } >/dev/null || apt_install redis-server
  mkdir -p "$DIR"
  if cluster_ok; then
    log "the cluster already answers on ${PORTS[0]}-${PORTS[5]} with state ok"
  else
    local p fresh=1
    for p in "${PORTS[@]}"; do check_port_is_ours "$p"; done
    for p in "${PORTS[@]}"; do
      [ -s "$DIR/$p/nodes.conf" ] && fresh=
      answers "$p" || start_node "$p" "$([ -s "$DIR/$p/nodes.conf" ] && echo "with its nodes.conf: it rejoins")"
    done
    # Configs from an earlier run (a node killed, a machine restart): give the
    # nodes a few seconds to find each other again before starting over.
    if [ -n "$fresh" ] || ! wait_ok 10; then
      [ -n "$fresh" ] || reset_nodes
      create
      wait_ok 30 || { "$0" status >&2 || true; die "the cluster did not reach state ok in 30 s"; }
    fi
    log "cluster up: 3 masters, 3 replicas, all 16384 slots served"
  fi
  write_env
  log "REDIS_CLUSTER_URL in $DIR/env"
  echo "$URL"
}

stop() {
  local p
  for p in "${PORTS[@]}"; do
    # Asked by port (a pid file may be stale after a reboot), and only a node of ours.
    if is_cluster_node "$p"; then cli "$p" shutdown nosave >/dev/null || true; fi
    for _ in $(seq 50); do answers "$p" || break; sleep 0.1; done
    answers "$p" && log "node $p is still up"
    rm -f "$DIR/$p/nodes.conf" "$DIR/$p/redis.pid" "$DIR/$p/dump.rdb"
  done
  rm -f "$DIR/env"
  log "cluster stopped (ports ${PORTS[0]}-${PORTS[5]})"
}

status() {
  local p role rc=0
  for p in "${PORTS[@]}"; do
    if ! answers "$p"; then echo "$p down"; rc=1; continue; fi
    role=$(cli "$p" role | head -n 1)
    printf '%s %-6s state=%s slots_ok=%s known_nodes=%s\n' "$p" "$role" \
      "$(info_field "$p" cluster_state)" "$(info_field "$p" cluster_slots_ok)" "$(info_field "$p" cluster_known_nodes)"
  done
  cluster_ok || rc=1
  return $rc
}

# Kill a master as a crash would (SIGKILL, no shutdown), then wait until the
# surviving nodes have promoted one of its replicas and serve every slot again.
failover_kill() {
  local port=${1:-} id pid replicas p t0 t1 new=
  [ -n "$port" ] || die "usage: $0 failover-kill PORT (one of ${PORTS[*]})"
  [[ " ${PORTS[*]} " == *" $port "* ]] || die "$port is not a node of this cluster (${PORTS[*]})"
  answers "$port" || die "no node answers on $port"
  [ "$(cli "$port" role | head -n 1)" = master ] || die "the node on $port is not a master"
  id=$(cli "$port" cluster myid | tr -d '\r')
  # The replicas of $id, as the cluster knows them: "<id> <ip:port@bus> slave <master-id> ..."
  replicas=$(cli "$port" cluster nodes | tr -d '\r' | awk -v m="$id" '$3 ~ /slave/ && $4 == m && $3 !~ /fail/ {split($2, a, "[:@]"); print a[2]}')
  [ -n "$replicas" ] || die "the master on $port has no healthy replica: a kill would lose its slots"
  pid=$(cli "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
  [ -n "$pid" ] || die "could not read the process id of the node on $port"
  t0=$(date +%s%N)
  log "killing master $port (pid $pid, replica(s): ${replicas//$'\n'/ })"
  kill -KILL "$pid"
  for _ in $(seq 300); do
    for p in $replicas; do
      if [ "$(cli "$p" role | head -n 1)" = master ]; then new=$p; break; fi
    done
    [ -n "$new" ] && break
    sleep 0.1
  done
  [ -n "$new" ] || die "no replica of $port was promoted in 30 s"
  # The survivors agree again: state ok everywhere but on the dead node.
  for _ in $(seq 300); do
    local all=1
    for p in "${PORTS[@]}"; do
      [ "$p" = "$port" ] && continue
      [ "$(info_field "$p" cluster_state)" = ok ] || { all=; break; }
    done
    [ -n "$all" ] && break
    sleep 0.1
  done
  [ -n "$all" ] || die "replica $new was promoted but the cluster is not ok after 30 s"
  t1=$(date +%s%N)
  log "replica $new promoted; cluster ok again after $(( (t1 - t0) / 1000000 )) ms (run '$0' to bring $port back as a replica)"
  echo "$new"
}

# The master serving slot $1 now, as a port.
slot_owner() {
  local p
  for p in "${PORTS[@]}"; do
    answers "$p" || continue
    cli "$p" cluster nodes | tr -d '\r' | awk -v s="$1" '$3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) { n = split($i, r, "-"); if (s >= r[1] && s <= (n == 2 ? r[2] : r[1])) { split($2, a, "[:@]"); print a[2] } } }'
    return 0
  done
}

# move_slot SLOT FROM TO: Redis Cluster's own resharding, for one slot: TO
# imports, FROM migrates, the keys go over with MIGRATE (a client that asks
# FROM for a moved key meanwhile is sent to TO with ASK, which fred follows),
# then every master learns the new owner.
move_slot() {
  local slot=$1 from=$2 to=$3 from_id to_id keys p
  from_id=$(cli "$from" cluster myid | tr -d '\r'); to_id=$(cli "$to" cluster myid | tr -d '\r')
  [ "$(cli "$to" cluster setslot "$slot" importing "$from_id")" = OK ] || die "slot $slot: $to would not import it"
  [ "$(cli "$from" cluster setslot "$slot" migrating "$to_id")" = OK ] || die "slot $slot: $from would not migrate it"
  while :; do
    mapfile -t keys < <(cli "$from" cluster getkeysinslot "$slot" 100 | tr -d '\r' | sed '/^$/d')
    [ ${#keys[@]} -gt 0 ] || break
    [ "$(cli "$from" migrate "$HOST" "$to" "" 0 5000 keys "${keys[@]}")" = OK ] ||
      die "slot $slot: MIGRATE from $from to $to failed"
  done
  cli "$to" cluster setslot "$slot" node "$to_id" >/dev/null
  cli "$from" cluster setslot "$slot" node "$to_id" >/dev/null
  for p in $(masters | tr ',' ' '); do
    cli "${p##*:}" cluster setslot "$slot" node "$to_id" >/dev/null || true
  done
}

# Concerts are spread over the masters by their tag's CRC16, a fair deal only
# on average: 30 concerts of ids 1-30 fall 14/8/8 on the three contiguous slot
# ranges of `--cluster create`. Before a big sale its operator deals the
# lineup's slots evenly instead (what `redis-cli --cluster rebalance` does by
# slot counts, done here by concert).
place() {
  [ $# -gt 0 ] || die "usage: $0 place CONCERT_ID... (the concerts to deal over the masters)"
  cluster_ok || die "the cluster is not ok; start it first (make cluster)"
  local masters_now=() id slot owner target i=0 moved=0
  declare -A seen=()
  IFS=, read -r -a masters_now <<<"$(masters)"
  for id in "$@"; do
    [[ $id =~ ^[0-9]+$ ]] || die "place: $id is not a concert id"
    slot=$(cli "${masters_now[0]##*:}" cluster keyslot "{c:$id}" | tr -d '\r')
    [ -z "${seen[$slot]:-}" ] || continue
    seen[$slot]=1
    target=${masters_now[$((i % ${#masters_now[@]}))]##*:}
    i=$((i + 1))
    owner=$(slot_owner "$slot")
    [ -n "$owner" ] || die "place: nobody serves slot $slot"
    if [ "$owner" != "$target" ]; then
      move_slot "$slot" "$owner" "$target"
      moved=$((moved + 1))
    fi
  done
  wait_ok 30 || die "the cluster is not ok after moving the slots"
  log "placed $# concert(s) on ${#masters_now[@]} masters round-robin ($moved slot(s) moved)"
}

# move ID: the slot of concert ID ({c:<id>}) to the master after the one
# serving it, keys and all, as a reshard under traffic does (tests/chaos.rs
# runs it under load); prints the new master's port.
move_concert() {
  [[ ${1:-} =~ ^[0-9]+$ ]] || die "usage: $0 move CONCERT_ID"
  cluster_ok || die "the cluster is not ok; start it first (make cluster)"
  local masters_now=() slot owner target= i
  IFS=, read -r -a masters_now <<<"$(masters)"
  slot=$(cli "${masters_now[0]##*:}" cluster keyslot "{c:$1}" | tr -d '\r')
  owner=$(slot_owner "$slot")
  [ -n "$owner" ] || die "move: nobody serves slot $slot"
  for i in "${!masters_now[@]}"; do
    if [ "${masters_now[$i]##*:}" = "$owner" ]; then
      target=${masters_now[$(( (i + 1) % ${#masters_now[@]} ))]##*:}
    fi
  done
  [ -n "$target" ] || die "move: $owner is not among the masters ${masters_now[*]}"
  move_slot "$slot" "$owner" "$target"
  wait_ok 30 || die "the cluster is not ok after moving slot $slot"
  log "moved slot $slot ({c:$1}) from $owner to $target"
  echo "$target"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$URL" ;;
  masters) masters ;;
  failover-kill) failover_kill "${2:-}" ;;
  place) shift; place "$@" ;;
  move) move_concert "${2:-}" ;;
  *) die "unknown argument $1 (start, stop, status, url, masters, place ID..., move ID or failover-kill PORT)" ;;
esac
