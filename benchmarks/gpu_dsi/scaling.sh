# DSI at GPU scale on 2 H200s (device kind nvidia-h200-x2): one device command of under 10 minutes per part,
#   bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/scaling.sh PART      (PART = A .. F)
# then `python benchmarks/gpu_dsi/collect.py DIRS` merges what came back into dsilab/results/scaling-scifact.json.
# Which part reproduces which study (dsilab.experiments.scaling.STUDIES):
# A: throughput (GPU 0, alone on it: dsilab bench throughput), corpus1k (GPU 0 after it), forgetting (GPU 1, 3 rows).
# B: corpus100k, atomic alone on GPU 0, semantic on GPU 1 (the committed semantic row came from an earlier command).
# C: corpus20k, both rows on GPU 0.
# D: stability (the 4-layer decoder past its collapse, one change at a time) and the model study's t5-small rows.
# E: reference, model (1- and 4-layer decoders), ratio, batch, all at lr 3e-4, and stability's 120-epoch row.
# F: corpus-fixed (every corpus size and docid kind at 2,000 steps), 4 rows at a time.
# G: t5-base throughput, then corpus-real (SciFact at batch 256, atomic and semantic side by side), on one H200.
# Every training row is capped at --time-limit-s (setup included) and appended to $OUT/<part>/rows.jsonl (--partial) when done
# (one file per part: the device tool returns at most 8 files).
set -u
S=.gpu/data/scifact
export DSILAB_ENCODER_DEVICE=cuda  # synthetic docids encoded on the GPU (a device setting)
# SciFact's MiniLM embeddings (semantic docids, dense baseline) computed once on the CPU and cached on disk, as the
# committed SciFact rows were: every process below reads them, so GPU rounding does not change SciFact's docids.
scifact() { DSILAB_ENCODER_DEVICE=cpu python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L; load_encoder().encode_cached(L('$S').contents)"; }
bench() { out=$OUT/$1; shift; mkdir -p "$out"; python3 -m dsilab bench "$@" --log-evals --out "$out" > "$out/log.txt" 2>&1; }
study() { name=$1; shift; bench "$name" scaling "$@" --partial "$OUT/$name/rows.jsonl"; }  # scaling rows also on disk when done
if [ "$1" = A ]; then
  scifact
  (export CUDA_VISIBLE_DEVICES=0
   OMP_NUM_THREADS=8 bench throughput throughput --collection $S --shapes minilm-seq2seq --batches 64 256 --steps 100
   DSILAB_GPUS=0 DSILAB_THREADS=6 study corpus1k --collection $S --jobs 2 --time-limit-s 120 --studies corpus1k
   OMP_NUM_THREADS=8 bench throughput_t5 throughput --collection $S --shapes t5-small --batches 64 256 --steps 100) &
  DSILAB_GPUS=1 DSILAB_THREADS=5 study forgetting --collection $S --jobs 3 --time-limit-s 210 --studies forgetting &
elif [ "$1" = B ]; then
  DSILAB_GPUS=0 DSILAB_THREADS=14 study b0 --collection $S --jobs 1 --time-limit-s 470 --studies corpus100k --rows atomic &
  DSILAB_GPUS=1 DSILAB_THREADS=14 study b1 --collection $S --jobs 1 --time-limit-s 470 --studies corpus100k --rows semantic &
elif [ "$1" = C ]; then
  DSILAB_GPUS=0 DSILAB_THREADS=8 study c0 --collection $S --jobs 2 --time-limit-s 370 --studies corpus20k &
elif [ "$1" = D ]; then  # why runs collapse after memorising (study "stability"), and the t5-small shape at two lrs
  scifact
  DSILAB_GPUS=0,1 DSILAB_THREADS=4 study d --collection $S --jobs 8 --time-limit-s 420 --studies stability model --rows "stability: 4-layer decoder, bf16" fp32 "beta2 0.9" "stability: 4-layer decoder, lr 3e-4" "epoch 60" t5 &
elif [ "$1" = E ]; then  # model size, ratio and batch at lr 3e-4 beside their reference row; the collapse at lr 1e-3 again
  scifact
  DSILAB_GPUS=0,1 DSILAB_THREADS=4 study e --collection $S --jobs 8 --time-limit-s 450 --studies reference batch model ratio stability --rows "reference:" "batch:" seq2seq "ratio:" "epoch 120" &
elif [ "$1" = F ]; then  # corpus size at a fixed budget (2,000 steps): 4 rows at a time, the 100k rows first
  scifact
  DSILAB_GPUS=0,1 DSILAB_THREADS=8 study f --collection $S --jobs 4 --time-limit-s 440 --studies corpus-fixed &
elif [ "$1" = G ]; then  # one GPU (kind nvidia-h200)
  scifact
  (OMP_NUM_THREADS=8 bench throughput_t5base throughput --collection $S --shapes t5-base --batches 64 256 --steps 100
   DSILAB_GPUS=0 DSILAB_THREADS=6 study g --collection $S --jobs 2 --time-limit-s 300 --studies corpus-real) &
else
  echo "usage: scaling.sh A|B|C|D|E|F|G" >&2; exit 2
fi
wait
grep -h "^|\|^{\|^\[\|ready after\|packed in\|^step\|Error\|Traceback" $OUT/*/log.txt | cut -c1-250 | tail -70
