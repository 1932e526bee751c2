# `dsilab bench dsi` on one GPU, 4 variants side by side (each with a quarter of the CPU cores), training capped per
# variant at TIME_LIMIT_S seconds (the lease; default 400). Through run.sh:
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/bench.sh scifact cisi
for name in "$@"; do
  python3 -m dsilab bench dsi --collection ".gpu/data/$name" --jobs 4 --time-limit-s "${TIME_LIMIT_S:-400}" --out "$OUT" \
    > "$OUT/$name.log" 2>&1 &
done
wait
for name in "$@"; do grep -h "^|\|^BM25\|^Dense\|Error\|error" "$OUT/$name.log"; done
