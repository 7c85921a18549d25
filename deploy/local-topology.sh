#!/usr/bin/env bash
# A scaled-out AgentGate on one machine, as processes: a throw-away PostgreSQL, two API nodes and three
# workers (docs/deployment.md "A local topology"). Ctrl-C stops everything and removes the database.
#
#   pnpm build && deploy/local-topology.sh [first API port, default 3101]
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql). As root, initdb and the server
# run as the `postgres` user (initdb refuses root).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT="${1:-3101}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 2; }
[ -f packages/server/dist/cli/main.js ] || { echo "run pnpm build first" >&2; exit 2; }

ROOT="$(mktemp -d /tmp/agentgate-topology-XXXXXX)"
chmod 755 "$ROOT"
PG_DATA="$ROOT/pg"
PG_PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$PG_DATA"
[ "$(id -u)" = 0 ] && chown postgres "$PG_DATA"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA" -l "$PG_DATA/postgres.log" -w start >/dev/null
export AGENTGATE_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

PIDS=()
stop() {
  trap - INT TERM EXIT
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${PIDS[@]}" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || true
  rm -rf "$ROOT"
}
trap stop INT TERM EXIT

CLI=packages/server/bin/agentgate.js
for i in 1 2; do
  AGENTGATE_HOME="$ROOT/api-$i" node "$CLI" serve --no-worker --port $((BASE_PORT + i - 1)) >"$ROOT/api-$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do
  AGENTGATE_HOME="$ROOT/worker-$i" node "$CLI" worker --max-concurrent 2 >"$ROOT/worker-$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 3
echo "PostgreSQL  $AGENTGATE_DATABASE_URL"
echo "API nodes   http://127.0.0.1:$BASE_PORT  http://127.0.0.1:$((BASE_PORT + 1))   (dashboard at /, docs at /docs)"
echo "workers     3 × --max-concurrent 2; logs in $ROOT/*.log"
echo "Ctrl-C stops everything."
wait "${PIDS[@]}"
