"""The DGI row of `dsilab bench all --collection lab` measured alone (on the GPU machine: DGI trains to convergence in
minutes there, against most of an hour on the 2-core CPU), written to $OUT/all-dgi-row.json; merged into
dsilab/results/all-lab.json with its machine named in the row's source.

    bash benchmarks/gpu_dsi/run.sh python3 benchmarks/gpu_dsi/all_dgi_row.py
"""
import json
import os

from dsilab.experiments.all_methods import bench_all
from dsilab.data import load_collection

if __name__ == "__main__":
    out = os.environ.get("OUT", "build/bench")
    r = bench_all(load_collection("lab"), "test", 0, methods=["DGI (residual codes, DSI backbone)"], out_dir=out)
    with open(os.path.join(out, "all-dgi-row.json"), "w") as f:
        json.dump(r, f, indent=2)
    print(json.dumps(r["results"], indent=1))
