"""DSI on lab on a GPU: longer training, and a fine-tuned encoder at two learning rates (docs/benchmarks.md, dsi-lab-gpu).

Run on the GPU machine from the repo root after benchmarks/gpu_dsi/run.sh's set-up lines; writes $OUT/dsi-lab-*-gpu.json.
"""
import json
import os

from dsilab import bench
from dsilab.data import load_collection

lab = load_collection("lab")
RUNS = [  # (label, epochs, arch, lr, variants)
    ("30 epochs, frozen encoder", 30, {"decoder_layers": 2}, 3e-3,
     [("minilm-seq2seq", "atomic", 0, "encoder"), ("minilm-seq2seq", "atomic", 2, "encoder"), ("minilm-seq2seq", "semantic", 2, "encoder")]),
    ("30 epochs, encoder fine-tuned, lr 1e-3", 30, {"decoder_layers": 2, "freeze_encoder": False}, 1e-3,
     [("minilm-seq2seq", "atomic", 0, "encoder"), ("minilm-seq2seq", "atomic", 2, "encoder")]),
    ("30 epochs, encoder fine-tuned, lr 2e-4", 30, {"decoder_layers": 2, "freeze_encoder": False}, 2e-4,
     [("minilm-seq2seq", "atomic", 0, "encoder"), ("minilm-seq2seq", "atomic", 2, "encoder")]),
    ("10 epochs, encoder fine-tuned, lr 2e-4", 10, {"decoder_layers": 2, "freeze_encoder": False}, 2e-4,
     [("minilm-seq2seq", "atomic", 0, "encoder"), ("minilm-seq2seq", "atomic", 2, "encoder")]),
]
out = {}
for label, epochs, arch, lr, variants in RUNS:
    bench.DSI_BENCH["minilm-seq2seq"] = {"arch": arch, "epochs": epochs, "lr": lr, "batch_size": 64}
    r = bench.bench_dsi(lab, variants=variants)
    out[label] = {"size": dict(bench.DSI_BENCH["minilm-seq2seq"]), "results": r["results"], "environment": r["environment"]}
    print(label)
    print(bench.format_table(r["results"]), flush=True)
open(os.path.join(os.environ["OUT"], "dsi-lab-longer-gpu.json"), "w").write(json.dumps(out, indent=2))
