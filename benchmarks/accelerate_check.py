"""Does `dsilab.train` run unchanged under `accelerate launch` on several GPUs, and learn the same thing?

    python benchmarks/accelerate_check.py --out build/accel/single.pt --batch 16        # 1 process, batch 16
    accelerate launch --num_processes 2 benchmarks/accelerate_check.py --out build/accel/ddp.pt --batch 8
    python benchmarks/accelerate_check.py --compare build/accel/single.pt build/accel/ddp.pt

Two processes at micro-batch 8 see the same global batches as one process at 16 (the loop gives each
rank its slice of every global batch, atomic docids make every target the same length), so DDP's
averaged gradients equal the single run's and the final weights must agree up to float rounding.
A tiny t5-scratch model on a synthetic collection: no download, seconds per run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def train_once(out: Path, batch: int, steps: int, seed: int = 0) -> None:
    from accelerate import PartialState

    from dsilab.data import synthetic_collection
    from dsilab.docids import make_docids
    from dsilab.models import build_model
    from dsilab.tasks import TaskConfig, build_examples
    from dsilab.train import TrainConfig, train

    state = PartialState()
    coll = synthetic_collection(n_docs=64, n_topics=4, n_subtopics=2, doc_len=16, queries_per_doc=3, seed=seed)
    tree = make_docids(coll, "atomic")
    examples = build_examples(coll, tree, TaskConfig(doc_len=16, seed=seed))
    examples = examples[: len(examples) // 16 * 16]  # whole global batches only: equal shares on every rank
    model = build_model("t5-scratch", tree, examples, seed=seed, vocab_size=300, d_model=64, layers=2,
                        decoder_layers=2, heads=4, d_ff=128, dropout=0.0)
    cfg = TrainConfig(max_steps=steps, batch_size=batch, lr=3e-3, warmup_steps=5, amp="off", progress=False,
                      seed=seed, checkpoint_every=10, checkpoint_dir=str(out.parent / f"ckpt-{out.stem}"))
    t0 = time.perf_counter()
    result = train(model, examples, cfg)
    if state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
        info = {"processes": state.num_processes, "device": str(state.device), "micro_batch": batch,
                "global_batch": batch * state.num_processes, "steps": result.steps, "final_loss": result.final_loss,
                "seconds": round(time.perf_counter() - t0, 1),
                "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
        out.with_suffix(".json").write_text(json.dumps(info, indent=2))
        print(json.dumps(info))


def compare(a: Path, b: Path) -> dict:
    x, y = torch.load(a), torch.load(b)
    diff = max((x[k].float() - y[k].float()).abs().max().item() for k in x)
    scale = max(x[k].float().abs().max().item() for k in x)
    moved = max((x[k].float() - y[k].float()).abs().max().item() for k in x if "shared" in k or "embed" in k)
    report = {"max_abs_weight_difference": diff, "max_abs_weight": scale, "embedding_difference": moved,
              "same": diff < 1e-3, "runs": [json.loads(p.with_suffix(".json").read_text()) for p in (a, b)]}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--compare", nargs=2, type=Path)
    args = ap.parse_args()
    if args.compare:
        report = compare(*args.compare)
        raise SystemExit(0 if report["same"] else 1)
    train_once(args.out, args.batch, args.steps)
