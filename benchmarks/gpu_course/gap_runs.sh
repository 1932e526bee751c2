#!/usr/bin/env bash
# The SciFact runs that finish what dsi-gap-scifact.json, the incremental and the query-generation studies left open,
# started together on one lent GPU (after `run.sh install` of the wheel folders), each detached; `run.sh collect`
# brings back their logs and JSON (NAME-dsi-scifact.json, NAME-qg-scifact.json, NAME-incremental-scifact.json):
#   bash benchmarks/gpu_course/gap_runs.sh [first|prefix|prefix-only]       # carry .gpu
# first (dsi0, qg1, inc0):
#   dsi0: the span-query (distillation) rows at lr 3e-4 beside their control (at lr 1e-3 both diverged: memorisation
#     rose to 0.10 and 0.62, then fell to 0.00); evaluations every 1,000 steps.
#   qg1: DSI-QG with the round-trip filter (a generated query is kept only when BM25 ranks its source first).
#   inc0: new documents without queries added to a planned semantic-docid index; replay capped at 300 steps.
# prefix (dsi1, qg1): dsi0's rows again with a longer time limit (the span-only row had not converged in 480 s), beside
#   the dense teacher's top-10 taught at every docid prefix (dsilab.distill), with and without the plan; qg1 again,
#   now that bench pairs DSI-QG with the plain DSI row.
# prefix-only (dsi1): the two prefix-loss rows beside their control (dense-teacher top-1 labels) alone, in 600 s.
set -euo pipefail
R="bash benchmarks/gpu_course/run.sh"
$R collect > /dev/null 2>&1 || true  # copies .gpu to /tmp/gpu and restores MiniLM's weights
export PYTHONPATH=/tmp/site:/tmp/gpu/site:$PWD MINILM_DIR=/tmp/minilm DSILAB_CACHE=/tmp/dc HF_HUB_OFFLINE=1
C=/tmp/gpu/data/scifact
python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L
c = L('$C'); e = load_encoder(); e.encode_cached(c.contents); e.encode_cached(list(c.queries.values()))"
SPAN="DSI semantic (+5 span queries/doc"
TEACHER="$SPAN, dense-teacher top-1 labels"
if [ "${1:-first}" = first ]; then
  THREADS=6 $R detach dsi0 bench dsi --collection $C --seed 0 --jobs 4 --time-limit-s ${DSI_LIMIT:-480} \
    --recipe '{"lr": 3e-4, "eval_every": 1000}' --variants "DSI semantic" "$SPAN)" "$TEACHER)" \
    "$TEACHER, BM25 lexical plan)"
  THREADS=4 $R detach inc0 bench incremental --collection $C --seed 0 --no-new-queries --recipe '{"plan": "bm25"}' \
    --time-limit-s 200 --update-max-steps 300
elif [ "$1" = prefix-only ]; then  # the prefix-loss rows beside their control alone, when device time is short
  THREADS=10 $R detach dsi1 bench dsi --collection $C --seed 0 --jobs 3 --time-limit-s ${DSI_LIMIT:-600} \
    --recipe '{"lr": 3e-4, "eval_every": 1000}' --variants "$TEACHER)" "$TEACHER, dense-teacher top-10 prefix loss)" \
    "$TEACHER, dense-teacher top-10 prefix loss, BM25 lexical plan)"
  exit 0
else
  THREADS=8 $R detach dsi1 bench dsi --collection $C --seed 0 --jobs 5 --time-limit-s ${DSI_LIMIT:-840} \
    --recipe '{"lr": 3e-4, "eval_every": 1000}' --variants "DSI semantic" "$SPAN)" "$TEACHER)" \
    "$TEACHER, dense-teacher top-10 prefix loss)" "$TEACHER, dense-teacher top-10 prefix loss, BM25 lexical plan)"
fi
THREADS=5 $R detach qg1 bench qg --collection $C --seed 0 --jobs 3 --recipe '{"query_filter_k": 1}'
sleep 20; tail -n 2 /tmp/gpu_course_log_*.txt; nvidia-smi --query-gpu=memory.used --format=csv
