#!/usr/bin/env bash
# mqadmin beside its peers, on one dedicated PostgreSQL server, in one run (one command):
#
#   bench/run_peers.sh                      # mqadmin raw_sql pgqueuer procrastinate, REPEATS=3
#   REPEATS=1 BENCH_N=20000 bench/run_peers.sh
#   SYSTEMS="mqadmin raw_sql" bench/run_peers.sh
#   EXTRA=1 bench/run_peers.sh              # also bench/engine_extra.py (1M messages; several minutes)
#
# Uses the shared harness (../shared/bench, BENCH_HARNESS to change). Results go to bench-results/
# (gitignored): the harness's run-*.jsonl, env-*.json and summary-*.md, then goals-*.md from
# bench/report.py (ratios against the issue's goals), ready to paste into docs/benchmarks.md.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
HARNESS=${BENCH_HARNESS:-$ROOT/../shared/bench}
[ -x "$HARNESS/run_all.sh" ] || { echo "no harness at $HARNESS (set BENCH_HARNESS)" >&2; exit 2; }
[ -x "$ROOT/.venv/bin/python" ] || { echo "no project venv at $ROOT/.venv" >&2; exit 2; }

export BENCH_RESULTS=${BENCH_RESULTS:-$ROOT/bench-results}
export BENCH_ADAPTER_mqadmin=$ROOT/bench/peer_adapter.py
export BENCH_PY_mqadmin=$ROOT/.venv/bin/python
export SYSTEMS=${SYSTEMS:-mqadmin raw_sql pgqueuer procrastinate}
export REPEATS=${REPEATS:-3}
# A server of our own (the harness deletes and re-creates this folder), so that another benchmark
# run on the machine with the default folder is not torn down by this one.
export BENCH_PGROOT=${BENCH_PGROOT:-/tmp/benchpg-mqadmin}
mkdir -p "$BENCH_RESULTS"

before=$(ls -1 "$BENCH_RESULTS"/run-*.jsonl 2>/dev/null | sort | tail -n 1)
"$HARNESS/run_all.sh"
status=$?
run=$(ls -1 "$BENCH_RESULTS"/run-*.jsonl 2>/dev/null | sort | tail -n 1)
if [ -z "$run" ] || [ "$run" = "$before" ]; then
  echo "the harness wrote no results" >&2
  exit 1
fi
stamp=$(basename "$run" .jsonl); stamp=${stamp#run-}

extra_args=()
if [ "${EXTRA:-0}" = 1 ]; then
  # On the project's embedded server (its settings: autovacuum_naptime=10s matters for the churn
  # test), in a database of its own; BENCH_EXTRA_DSN names another server's maintenance database.
  "$ROOT/.venv/bin/python" bench/engine_extra.py ${BENCH_EXTRA_DSN:+--admin-dsn "$BENCH_EXTRA_DSN"} \
    --out "$BENCH_RESULTS/extra-$stamp.json" || exit 1
  extra_args=(--extra "$BENCH_RESULTS/extra-$stamp.json")
fi

"$ROOT/.venv/bin/python" bench/report.py "$run" --env "$BENCH_RESULTS/env-$stamp.json" "${extra_args[@]}" \
  | tee "$BENCH_RESULTS/goals-$stamp.md"
exit $status
