#!/usr/bin/env bash
# Issue 33's equal-token sweep of verifier-guided search on the embedded model (sweep `search-eq`):
# 100 fresh arith questions (seed 60307), total budgets 512/1024/1536 (each sample of maj4/prm4 gets
# N/4 = 128-384 tokens, inside l1-tiny's trained range), with the oracle and the learned tiny-prm.
# Resumable: run it again and it skips what the store holds. Table: scripts/search_eq_table.py.
# The 16-path point (each path 256 tokens, as maj16's samples):
#   SEARCH_EQ_RUN=search-eq16 SEARCH_EQ_BUDGETS=4096 \
#   SEARCH_EQ_CONTROLLERS=maj16:l1_exact,prm16:l1_exact@oracle,beam4x4@oracle,particles16@oracle scripts/search_eq_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${SEARCH_EQ_DIR:-data/search}
mkdir -p "$OUT"
CONTROLLERS=${SEARCH_EQ_CONTROLLERS:-l1_exact,maj4:l1_exact,prm4:l1_exact@oracle,beam4x4@oracle,particles4@oracle,prm4:l1_exact@tiny-prm,beam4x4@tiny-prm,particles4@tiny-prm}
exec .venv/bin/python app.py sweep --db "$OUT/search.duckdb" --data-dir "$OUT" --jobs-dir "$OUT/jobs" \
  --model l1-tiny --dataset arith --limit 100 --seed 60307 --budgets "${SEARCH_EQ_BUDGETS:-512,1024,1536}" \
  --concurrency "${SEARCH_EQ_CONCURRENCY:-24}" --run "${SEARCH_EQ_RUN:-search-eq}" --controllers "$CONTROLLERS"
