# DGI vs DSI-semantic on the same backbone, with the ablations, per popularity bucket (dsilab bench dgi), on 2 H200s
# (device kind nvidia-h200-x2): one device command of under 10 minutes per part,
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/dgi.sh PART      (PART = 1 or 2)
# 1: the lab (Zipfian training queries), 6 variants x seeds 0-2, on GPU 0; SciFact seed 0, 6 variants, on GPU 1.
# 2: SciFact seeds 1 and 2, 12 rows over both GPUs.
# then `python benchmarks/gpu_dsi/collect_dgi.py DIRS` merges what came back into dsilab/results/dgi-{lab,scifact}.json.
# SciFact rows train at lr 3e-4 (chosen on dev in the scaling study "stability"); lab rows at the default Recipe.
# Every row is capped at --time-limit-s of training and appended to $OUT/<part>/rows.jsonl (--partial) when done.
set -u
S=.gpu/data/scifact
SCIFACT_RECIPE='{"lr": 3e-4, "eval_every": 470}'
scifact() { DSILAB_ENCODER_DEVICE=cpu python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L; load_encoder().encode_cached(L('$S').contents)"; }
bench() { out=$OUT/$1; shift; mkdir -p "$out"; python3 -m dsilab bench dgi "$@" --log-evals --partial "$out/rows.jsonl" --out "$out" > "$out/log.txt" 2>&1; }
if [ "$1" = 1 ]; then
  scifact
  DSILAB_GPUS=0 DSILAB_THREADS=2 bench lab --collection lab --jobs 9 --time-limit-s 300 &
  DSILAB_GPUS=1 DSILAB_THREADS=2 bench scifact0 --collection $S --seeds 0 --recipe "$SCIFACT_RECIPE" --jobs 6 --time-limit-s 400 &
elif [ "$1" = 2 ]; then
  scifact
  DSILAB_GPUS=0,1 DSILAB_THREADS=2 bench scifact12 --collection $S --seeds 1 2 --recipe "$SCIFACT_RECIPE" --jobs 12 --time-limit-s 400 &
else
  echo "usage: dgi.sh 1|2" >&2; exit 2
fi
wait
grep -h "^|\|memo\|Error\|Traceback\|failed" $OUT/*/log.txt | cut -c1-250 | tail -80
