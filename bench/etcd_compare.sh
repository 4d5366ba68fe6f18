#!/usr/bin/env bash
# tinyraft against etcd: the same closed-loop put workload on a 3-node cluster of each, on
# loopback, one system at a time, with durable writes on both sides.
#
#   bench/etcd_compare.sh                     # 1, 8 and 64 clients, 20 s each, 256-byte values
#   CLIENTS="1 4 16 64" DURATION=10s VALUE_SIZE=256 bench/etcd_compare.sh
#   ROUNDS=3 bench/etcd_compare.sh            # every point 3 times; the table shows medians
#
# What runs:
#   - etcd: three `etcd` members (Debian's etcd-server; installed with apt-get if missing and
#     we are root), client and peer URLs on 127.0.0.1. etcd fsyncs its WAL before it
#     acknowledges (its default; --unsafe-no-fsync is not used). Load comes from
#     bench/etcd-load, a small Rust gRPC client (KV.Put), aimed at the leader.
#   - tinyraft: three `tinyraft node` processes (release build) with file storage, which
#     fdatasyncs every ready round before anything that reveals it leaves the node (the
#     leader's appends go out while it syncs, as etcd's leader writes its WAL while the
#     followers write theirs). Load comes from `tinyraft bench`, which finds the leader itself.
#   Both load generators are closed loop: each client waits for its put to be acknowledged
#   (committed on a majority and applied) before sending the next, writes its own keys
#   (bench-<client>-<k>, 100 per client) and counts only puts made inside the window after a
#   1 s warm-up. Data directories share one temporary directory (same disk). Both clusters
#   run at once, idle but for heartbeats while the other is measured, and the two systems
#   take turns at each client count, the one going first alternating from point to point
#   and from round to round (so neither always runs right after the other's disk load).
#
# Output: one line per run, a table, and for each client count the lines
# `ratio tinyraft/etcd put/s @N clients: X.XX` and the two p99s. With ROUNDS > 1 the whole
# sweep runs ROUNDS times and the table shows, per system and point, the median of each
# column over the rounds (and the range of the p99s). Every run also goes to $OUT (default
# bench/results/etcd_compare.csv): system,clients,ops_per_sec,p50_ms,p99_ms,p999_ms.
# The machine is shared and its disk latency varies with what else runs on the host: run it
# when nothing else is building, with ROUNDS=3 or more.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CLIENTS=${CLIENTS:-"1 8 64"}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-20s}
VALUE_SIZE=${VALUE_SIZE:-256}
WARMUP=${WARMUP:-1s}
OUT=${OUT:-$ROOT/bench/results/etcd_compare.csv}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing etcd-server and etcd-client (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  else
    echo "etcd not found: apt-get install etcd-server etcd-client" >&2
    exit 1
  fi
fi
etcd --version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

echo "building tinyraft (release) and etcd-load"
cargo build --release -q -p tinyraft-cli
CARGO_TARGET_DIR="$TARGET/etcd-load" cargo build --release -q --manifest-path bench/etcd-load/Cargo.toml
TINYRAFT="$TARGET/release/tinyraft"
ETCD_LOAD="$TARGET/etcd-load/release/etcd-load"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinyraft-vs-etcd.XXXXXX")
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

# Ports: etcd member i listens on 2379i (clients) and 2380i (peers); tinyraft node i on 2381i.
field() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" <<<"$1"; }
mkdir -p "$(dirname "$OUT")"
echo "system,clients,ops_per_sec,p50_ms,p99_ms,p999_ms" >"$OUT"
record() { # system clients json
  echo "$1,$2,$(field "$3" ops_per_sec),$(field "$3" p50_ms),$(field "$3" p99_ms),$(field "$3" p999_ms)" >>"$OUT"
}

# ----- etcd ----------------------------------------------------------------------------------
CLUSTER="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
ENDPOINTS="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token tinyraft-bench \
    --logger zap --log-level error >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 100); do
  etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
etcdctl --endpoints "$ENDPOINTS" endpoint health
# `endpoint status -w simple`: endpoint, id, version, db size, is leader, ...
LEADER=$(etcdctl --endpoints "$ENDPOINTS" endpoint status -w simple | awk -F', ' '$5 == "true" {print $1}')
echo "etcd leader: $LEADER"

# ----- tinyraft ------------------------------------------------------------------------------
PEERS="1=127.0.0.1:23811,2=127.0.0.1:23812,3=127.0.0.1:23813"
for i in 1 2 3; do
  "$TINYRAFT" node --id "$i" --peers "$PEERS" --data-dir "$WORK/tinyraft$i" >"$WORK/tinyraft$i.log" 2>&1 &
  PIDS+=($!)
done

# ----- the runs ------------------------------------------------------------------------------
# Both clusters stay up (the idle one only sends heartbeats) and the two systems take turns
# at each client count, so that load from elsewhere on the machine drifts over both alike.
run_etcd() { # clients round
  local j
  j=$("$ETCD_LOAD" --endpoint "http://$LEADER" --clients "$1" --duration "$DURATION" \
    --warmup "$WARMUP" --value-size "$VALUE_SIZE")
  echo "etcd     $1 clients (round $2): $j"
  record etcd "$1" "$j"
}
run_tinyraft() { # clients round
  local j
  j=$("$TINYRAFT" bench --peers "$PEERS" --clients "$1" --duration "$DURATION" \
    --warmup "$WARMUP" --value-size "$VALUE_SIZE" --json 2>/dev/null)
  echo "tinyraft $1 clients (round $2): $j"
  record tinyraft "$1" "$j"
}
for r in $(seq "$ROUNDS"); do
  i=0
  for c in $CLIENTS; do
    i=$((i + 1))
    if (((r + i) % 2 == 0)); then
      run_etcd "$c" "$r"; run_tinyraft "$c" "$r"
    else
      run_tinyraft "$c" "$r"; run_etcd "$c" "$r"
    fi
  done
done
stop_all

# ----- report --------------------------------------------------------------------------------
col() { # system clients column: that column of every run of the point, one a line
  awk -F, -v s="$1" -v c="$2" -v k="$3" '$1 == s && $2 == c {print $k}' "$OUT"
}
median() { # system clients column
  col "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
range() { # system clients column: "min-max"
  col "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.1f-%.1f", lo, hi}'
}
echo
echo "3 nodes each on loopback, $VALUE_SIZE-byte values, $DURATION per point, durable writes; $(nproc) cores, $(date -u +%Y-%m-%d)"
[ "$ROUNDS" -gt 1 ] && echo "median of $ROUNDS rounds per point (p99 range in brackets)"
printf "%8s | %12s %9s %9s | %12s %9s %9s | %6s\n" clients "tinyraft/s" "p50 ms" "p99 ms" "etcd/s" "p50 ms" "p99 ms" ratio
for c in $CLIENTS; do
  t=$(median tinyraft "$c" 3) e=$(median etcd "$c" 3)
  printf "%8s | %12.0f %9.3f %9.3f | %12.0f %9.3f %9.3f | %6.2f\n" "$c" \
    "$t" "$(median tinyraft "$c" 4)" "$(median tinyraft "$c" 5)" \
    "$e" "$(median etcd "$c" 4)" "$(median etcd "$c" 5)" \
    "$(awk -v a="$t" -v b="$e" 'BEGIN {print a / b}')"
done
for c in $CLIENTS; do
  awk -v c="$c" -v a="$(median tinyraft "$c" 3)" -v b="$(median etcd "$c" 3)" \
    'BEGIN {printf "ratio tinyraft/etcd put/s @%s clients: %.2f\n", c, a / b}'
  if [ "$ROUNDS" -gt 1 ]; then
    echo "p99 @$c clients: tinyraft $(median tinyraft "$c" 5) ms [$(range tinyraft "$c" 5)], etcd $(median etcd "$c" 5) ms [$(range etcd "$c" 5)]"
  else
    echo "p99 @$c clients: tinyraft $(median tinyraft "$c" 5) ms, etcd $(median etcd "$c" 5) ms"
  fi
done
echo "results: $OUT"
