# DSI-QG on SciFact on one GPU (dsilab/results/qg-scifact.json), in two steps that each fit one device command:
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/qg.sh prepare   # train the generator, generate, cache
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/qg.sh bench     # the DSI rows, 3 side by side (290 s cap each)
# N="5 20" adds the 20-per-document rows (5 jobs; more than one 600 s device command); TIME_LIMIT_S caps each row.
# Generated queries make an epoch 5-20x longer than SciFact's own, so evaluations come every 400 steps (not 5 epochs).
N=${N:-5}
if [ "$1" = prepare ]; then
  python3 -c "from dsilab.experiments.qg import prepare_qg; from dsilab.data import load_collection as L; prepare_qg(L('.gpu/data/scifact'), n_values=[${N// /,}])"
else
  python3 -m dsilab bench qg --collection .gpu/data/scifact --n-values $N --recipe '{"eval_every": 400, "patience": 2}' \
    --jobs 3 --time-limit-s "${TIME_LIMIT_S:-290}" --out "$OUT"
fi
