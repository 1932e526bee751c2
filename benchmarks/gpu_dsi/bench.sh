# `dsilab bench dsi` on one GPU, 4 variants side by side (each with a quarter of the CPU cores), training capped per
# variant at DSILAB_TIME_LIMIT_S (the lease). Through run.sh: bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/bench.sh scifact cisi
export DSILAB_BENCH_JOBS=4 DSILAB_TIME_LIMIT_S=${DSILAB_TIME_LIMIT_S:-400}
for name in "$@"; do
  python3 -m dsilab bench dsi --collection ".gpu/data/$name" --out "$OUT" > "$OUT/$name.log" 2>&1 &
done
wait
for name in "$@"; do grep -h "^|\|^BM25\|^Dense\|Error\|error" "$OUT/$name.log"; done
