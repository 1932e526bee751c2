# DSI at GPU scale on 2 H200s (device kind nvidia-h200-x2), in three device commands of under 10 minutes each:
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/scaling.sh A
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/scaling.sh B
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/scaling.sh C
# A: GPU 0 measures the loop's throughput (dsilab bench throughput) with no training beside it on that GPU, and trains
#    the 1k-document corpus rows; GPU 1 trains SciFact with the three docid kinds and no early stop (forgetting).
# B: GPU 0 the 100k corpus with atomic docids (alone on its GPU), GPU 1 the model-size and indexing:retrieval rows.
# C: GPU 0 the 20k corpus rows, GPU 1 the 4-layer decoder and indexing:retrieval rows again (B's command ended before
#    them: five rows shared GPU 1 and SciFact was encoded first). Not run for lack of device time: the batch rows, the
#    t5-small shape's row (unmemorised in B), t5-base throughput and the SciFact rows at batch 256.
# Every training row is capped at DSILAB_TIME_LIMIT_S (setup included) and appended to $OUT/<part>/rows.jsonl when done
# (one file per part: the device tool returns at most 8 files).
set -u
S=.gpu/data/scifact
export DSILAB_ENCODER_DEVICE=cuda DSILAB_LOG_EVALS=1  # synthetic docids encoded on the GPU; progress in the logs
# SciFact's MiniLM embeddings (semantic docids, dense baseline) computed once on the CPU and cached on disk, as the
# committed SciFact rows were: every process below reads them, so GPU rounding does not change SciFact's docids.
scifact() { DSILAB_ENCODER_DEVICE=cpu python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L; load_encoder().encode_cached(L('$S').contents)"; }
bench() { out=$OUT/$1; shift; mkdir -p "$out"; DSILAB_PARTIAL=$out/rows.jsonl python3 -m dsilab bench "$@" --out "$out" > "$out/log.txt" 2>&1; }
if [ "$1" = A ]; then
  scifact
  (export CUDA_VISIBLE_DEVICES=0
   OMP_NUM_THREADS=8 DSILAB_SHAPES=minilm-seq2seq DSILAB_BATCHES=64,256 DSILAB_STEPS=100 bench throughput throughput --collection $S
   DSILAB_GPUS=0 DSILAB_BENCH_JOBS=2 DSILAB_THREADS=6 DSILAB_TIME_LIMIT_S=120 DSILAB_STUDY=corpus1k bench corpus1k scaling --collection $S
   OMP_NUM_THREADS=8 DSILAB_SHAPES=t5-small DSILAB_BATCHES=64,256 DSILAB_STEPS=100 bench throughput_t5 throughput --collection $S) &
  DSILAB_GPUS=1 DSILAB_BENCH_JOBS=3 DSILAB_THREADS=5 DSILAB_TIME_LIMIT_S=210 DSILAB_STUDY=forgetting bench forgetting scaling --collection $S &
elif [ "$1" = B ]; then
  DSILAB_GPUS=0 DSILAB_BENCH_JOBS=1 DSILAB_THREADS=14 DSILAB_TIME_LIMIT_S=470 DSILAB_STUDY=corpus100k DSILAB_ROWS=atomic bench b0 scaling --collection $S &
  (scifact; DSILAB_GPUS=1 DSILAB_BENCH_JOBS=5 DSILAB_THREADS=3 DSILAB_TIME_LIMIT_S=400 DSILAB_STUDY=model,ratio bench b1 scaling --collection $S) &
else  # C
  DSILAB_GPUS=0 DSILAB_BENCH_JOBS=2 DSILAB_THREADS=8 DSILAB_TIME_LIMIT_S=370 DSILAB_STUDY=corpus20k bench c0 scaling --collection $S &
  (scifact; DSILAB_GPUS=1 DSILAB_BENCH_JOBS=3 DSILAB_THREADS=5 DSILAB_TIME_LIMIT_S=330 DSILAB_STUDY=model,ratio DSILAB_ROWS=4-layer,indexing bench c1 scaling --collection $S) &
fi
wait
grep -h "^|\|^{\|^\[\|ready after\|packed in\|^step\|Error\|Traceback" $OUT/*/log.txt | cut -c1-250 | tail -70
