# DSI-QG on SciFact on one GPU (dsilab/results/qg-scifact.json), in two steps that each fit one device command:
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/qg.sh prepare   # train the generator, generate, cache
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/qg.sh bench     # the DSI rows, 3 side by side (290 s cap each)
# DSILAB_QG_N=5,20 adds the 20-per-document rows (5 jobs; more than one 600 s device command).
# Generated queries make an epoch 5-20x longer than SciFact's own, so evaluations come every 400 steps (not 5 epochs).
export DSILAB_QG_N=${DSILAB_QG_N:-5} DSILAB_QG_RECIPE='{"eval_every": 400, "patience": 2}'
export DSILAB_BENCH_JOBS=3 DSILAB_TIME_LIMIT_S=${DSILAB_TIME_LIMIT_S:-290}
if [ "$1" = prepare ]; then
  python3 -c "from dsilab.experiments.qg import prepare_qg; from dsilab.data import load_collection as L; prepare_qg(L('.gpu/data/scifact'))"
else
  python3 -m dsilab bench qg --collection .gpu/data/scifact --out "$OUT"
fi
