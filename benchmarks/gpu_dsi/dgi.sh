# DGI vs DSI-semantic on the same backbone, with the ablations, per popularity bucket (dsilab bench dgi), on 2 H200s
# (device kind nvidia-h200-x2): one device command of under 10 minutes per part,
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/dgi.sh PART      (PART = 1 or 2)
# 1: the lab (Zipfian training queries), 6 variants x seeds 0-2, on GPU 0; SciFact seed 0, 6 variants, on GPU 1.
# 2: SciFact seeds 1 and 2, 12 rows over both GPUs.
# then `python benchmarks/gpu_dsi/collect_dgi.py DIRS` merges what came back into dsilab/results/dgi-{lab,scifact}.json.
# SciFact rows train at lr 3e-4 (chosen on dev in the scaling study "stability"); lab rows at the default Recipe.
# Every row is capped at DSILAB_TIME_LIMIT_S of training and appended to $OUT/<part>/rows.jsonl when done.
set -u
S=.gpu/data/scifact
SCIFACT_RECIPE='{"lr": 3e-4, "eval_every": 470}'
export DSILAB_LOG_EVALS=1
scifact() { DSILAB_ENCODER_DEVICE=cpu python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L; load_encoder().encode_cached(L('$S').contents)"; }
bench() { out=$OUT/$1; shift; mkdir -p "$out"; DSILAB_PARTIAL=$out/rows.jsonl python3 -m dsilab bench dgi "$@" --out "$out" > "$out/log.txt" 2>&1; }
if [ "$1" = 1 ]; then
  scifact
  DSILAB_GPUS=0 DSILAB_BENCH_JOBS=9 DSILAB_THREADS=2 DSILAB_TIME_LIMIT_S=300 bench lab --collection lab &
  DSILAB_GPUS=1 DSILAB_BENCH_JOBS=6 DSILAB_THREADS=2 DSILAB_TIME_LIMIT_S=400 DSILAB_DGI_SEEDS=0 DSILAB_DGI_RECIPE="$SCIFACT_RECIPE" bench scifact0 --collection $S &
elif [ "$1" = 2 ]; then
  scifact
  DSILAB_GPUS=0,1 DSILAB_BENCH_JOBS=12 DSILAB_THREADS=2 DSILAB_TIME_LIMIT_S=400 DSILAB_DGI_SEEDS=1,2 DSILAB_DGI_RECIPE="$SCIFACT_RECIPE" bench scifact12 --collection $S &
else
  echo "usage: dgi.sh 1|2" >&2; exit 2
fi
wait
grep -h "^|\|memo\|Error\|Traceback\|failed" $OUT/*/log.txt | cut -c1-250 | tail -80
