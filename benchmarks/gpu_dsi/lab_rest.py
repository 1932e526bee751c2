"""The lab DSI variants the CPU run could not finish in time, at the bench sizes (DSI_BENCH), on the GPU."""
import json, os
from dsilab.bench import bench_dsi, format_table
from dsilab.data import load_collection
r = bench_dsi(load_collection("lab"), variants=[("minilm-seq2seq", "atomic", 2, "encoder"), ("minilm-seq2seq", "semantic", 0, "encoder"),
                                                ("minilm-seq2seq", "semantic", 2, "encoder"), ("minilm-seq2seq", "atomic", 0, "encoder")])
print(format_table(r["results"]))
open(os.environ["OUT"] + "/dsi-lab-gpu-rest.json", "w").write(json.dumps(r, indent=2))
