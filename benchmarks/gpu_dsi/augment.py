"""`dsilab bench augment` split over two machines: augmentation here (spaCy, inflect, the masked LM), DSI on a GPU.

The GPU machine has no spaCy, so the augmented collections travel as one JSON file. The masked LM
(`ablation.bench_mlm`, 300 steps: half an hour on a busy 2-core CPU, 8 s on the GPU) may be trained on the GPU
first and copied into this machine's cache (~/.cache/dsilab/mlm/NAME; split it below 16 MiB per file to bring it back).
    python benchmarks/gpu_dsi/augment.py prepare .gpu/augment-lab.json          # this CPU: MLM + 5 pipelines x 3 seeds
    bash benchmarks/gpu_dsi/run.sh python3 benchmarks/gpu_dsi/augment.py train .gpu/augment-lab.json $OUT
    python benchmarks/gpu_dsi/augment.py write $OUT/augment-lab-runs.json     # here: the result JSON and docs section
Every DSI model is `dsilab.experiments.augment.train_and_score` (the one recipe, trained to convergence); `train` runs
JOBS (default 4) of the 15 trainings side by side, each in a fresh process.
"""
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

SEEDS = (0, 1, 2)


def prepare(path: str) -> None:
    from dsilab import load_collection
    from dsilab.augment import ablation_pipelines
    from dsilab.experiments.augment import bench_mlm, prepare as run_pipelines
    from dsilab.experiments.runner import environment

    coll = load_collection("lab")
    mlm = bench_mlm(coll, seed=SEEDS[0])
    records = run_pipelines(coll, ablation_pipelines(mlm), SEEDS, progress=True)
    with open(path, "w") as f:
        json.dump({"records": records, "mlm": {"name": mlm.name, **mlm.info}, "environment": environment()}, f)


def _one(rec: dict, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from dsilab import load_collection
    from dsilab.experiments.augment import ABLATION_RECIPE, _restore, train_and_score
    from dsilab.docids import make_docids

    coll = load_collection("lab")
    tree = make_docids(coll, ABLATION_RECIPE.docids, k=ABLATION_RECIPE.k, c=ABLATION_RECIPE.c, seed=0)
    row = train_and_score(_restore(coll, rec), rec["variants"], tree, ABLATION_RECIPE, rec["seed"])
    return {"name": rec["name"], "seed": rec["seed"], "aug_s": rec["aug_s"], **row, **rec["n_changed"]}


def train(path: str, out: str) -> None:
    from dsilab.experiments.runner import environment

    data = json.load(open(path))
    jobs = int(os.environ.get("JOBS", 4))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        rows = list(pool.map(_one, data["records"].values(), [max(1, (os.cpu_count() or 1) // jobs)] * len(data["records"])))
    for r in rows:
        print(r["name"], r["seed"], {k: r[k] for k in ("Hits@1", "Hits@10", "memo Hits@1", "steps", "stopped")}, flush=True)
    with open(os.path.join(out, "augment-lab-runs.json"), "w") as f:
        json.dump({"rows": rows, "mlm": data["mlm"], "cpu_environment": data["environment"],
                   "gpu_environment": environment()}, f)


def write(path: str) -> None:
    from dsilab import load_collection
    from dsilab.experiments.augment import ABLATION_RECIPE, result_record, summarise
    from dsilab.results import RESULTS_DIR
    from dsilab.experiments.runner import format_table, write_result
    from dsilab.docids import make_docids

    data = json.load(open(path))
    per_run: dict = {}
    for r in data["rows"]:
        per_run.setdefault(r.pop("name"), []).append(r)
    coll = load_collection("lab")
    tree = make_docids(coll, ABLATION_RECIPE.docids, k=ABLATION_RECIPE.k, c=ABLATION_RECIPE.c, seed=0)
    cpu, gpu = data["cpu_environment"], data["gpu_environment"]
    env = {**cpu, "command": "benchmarks/gpu_dsi/augment.py prepare | train | write (dsilab bench augment split in two)",
           "machine": f"augmentation: {cpu['machine']}; MLM and DSI training: {gpu['accelerator']}, {gpu['machine']}"}
    record = result_record(coll, summarise(per_run, ABLATION_RECIPE, tree), "test", SEEDS[0], {k: v for k, v in data["mlm"].items() if k != "name"},
                           data["mlm"]["name"], env, note="Augmentation (spaCy, inflect, masked-LM refill) ran and was timed on "
                           "the CPU. The masked LM was fine-tuned on the GPU (cached, then its weights moved to the CPU as fp16) and "
                           "the 15 DSI trainings (each to convergence) ran on the GPU, 4 side by side: train_s is GPU seconds.")
    print(format_table(record["results"]))
    print(write_result(record, RESULTS_DIR))


if __name__ == "__main__":
    {"prepare": prepare, "train": train, "write": write}[sys.argv[1]](*sys.argv[2:])
