"""GPU memory and speed of efficient DSI training, on randomly initialised T5 models (no download needed).

For T5 of t5-small, t5-base and t5-large shape (built from configs), one seq2seq training step of a
DSI-like batch (queries of --src-len tokens -> docids of --tgt-len tokens) is timed for

    full fp32       all weights train, fp32 compute (PyTorch default: no TF32 matmuls)
    full bf16       all weights train, fp32 master weights + bf16 autocast (standard mixed precision)
    lora bf16       frozen bf16 base, LoRA (r=--rank) on q,k,v,o of every attention, bf16 autocast
    qlora nf4       frozen base linear layers in 4-bit NF4 (double quantisation), LoRA in bf16; T5's
                    FFN output layer "wo" stays bf16 (transformers keeps it unquantised too)

each without and with gradient checkpointing, and a dense vs 80%-pruned (unstructured magnitude masks,
re-applied after every step) full-bf16 step. Reported: parameters, trainable %, peak GPU memory of the
training step (weights + optimizer state + activations), step time and training tokens/s
((src_len + tgt_len) * batch per step). Prints a Markdown table and writes JSON to --out.

    python benchmarks/gpu_efficiency.py --out build/bench/gpu_efficiency.json          # one H100: ~5 min
    python benchmarks/gpu_efficiency.py --tiny --out /tmp/gpu_eff_tiny.json            # CPU smoke test

Plain torch + transformers + peft + bitsandbytes; no dsilab import, so it runs on a bare GPU box.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from typing import Any

import torch
from torch import nn

SHAPES = {  # the published T5 v1 configurations (vocab 32128)
    "t5-small": dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64),
    "t5-base": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64),
    "t5-large": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16, d_kv=64),
}
TINY = {"t5-tiny": dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16)}
VARIANTS = ("full_fp32", "full_bf16", "lora_bf16", "qlora_nf4")


def build(shape: dict[str, int], vocab: int, variant: str, rank: int, device: torch.device, gc_on: bool) -> nn.Module:
    """A random T5 on `device`, prepared for one variant (dtype, adapters, 4-bit layers, checkpointing)."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=vocab, dropout_rate=0.1, tie_word_embeddings=True, decoder_start_token_id=0, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = T5ForConditionalGeneration(cfg)
    if variant in ("lora_bf16", "qlora_nf4"):
        model.to(torch.bfloat16)
        for p in model.parameters():
            p.requires_grad_(False)
    if variant == "qlora_nf4":
        quantize(model, device)
    if gc_on:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if variant in ("lora_bf16", "qlora_nf4"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05,
                                                 target_modules=["q", "k", "v", "o"]))
    return model


def quantize(model: nn.Module, device: torch.device) -> None:
    """Every nn.Linear but the head and the FFN output "wo" -> bitsandbytes NF4 with double quantisation."""
    import bitsandbytes as bnb

    head = model.get_output_embeddings()
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head and not n.endswith("wo")]
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent)
        lin = getattr(owner, child)
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4", device="meta")
        q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True,
                                     module=q)
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.data, requires_grad=False)
        setattr(owner, child, q.to(device))
        del lin


def prune_masks(model: nn.Module, sparsity: float) -> dict[nn.Parameter, torch.Tensor]:
    """Per-layer magnitude masks (True = keep) for every linear weight but the head."""
    head = model.get_output_embeddings()
    masks = {}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and m is not head:
                w = m.weight
                k = int(round(sparsity * w.numel()))
                thr = w.abs().flatten().kthvalue(k).values
                masks[w] = w.abs() > thr
                w.mul_(masks[w])
    return masks


def measure(name: str, shape: dict[str, int], variant: str, gc_on: bool, args, device: torch.device,
            sparsity: float = 0.0) -> dict[str, Any]:
    """Build, warm up, time `args.steps` optimizer steps; peak memory of the training phase."""
    row: dict[str, Any] = {"shape": name, "variant": variant if not sparsity else f"{variant}_pruned{int(sparsity * 100)}",
                           "grad_ckpt": gc_on}
    model = opt = None
    try:
        model = build(shape, args.vocab, variant, args.rank, device, gc_on)
        model.train()
        masks = prune_masks(model, sparsity) if sparsity else {}
        params = [p for p in model.parameters() if p.requires_grad]
        total = sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in model.parameters())
        row.update(params_m=round(total / 1e6, 1), trainable_pct=round(100 * sum(p.numel() for p in params) / total, 3))
        opt = torch.optim.AdamW(params, lr=1e-4)
        g = torch.Generator(device="cpu").manual_seed(0)
        src = torch.randint(2, args.vocab, (args.batch, args.src_len), generator=g).to(device)
        tgt = torch.randint(2, args.vocab, (args.batch, args.tgt_len), generator=g).to(device)
        mask = torch.ones_like(src)
        amp = variant != "full_fp32"

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = model(input_ids=src, attention_mask=mask, labels=tgt).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if masks:
                with torch.no_grad():
                    for w, m in masks.items():
                        w.mul_(m)

        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for _ in range(args.warmup):
            step()
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        dt = (time.perf_counter() - t0) / args.steps
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process-wide on CPU (GiB)
        row.update(peak_gib=round(peak, 2), step_ms=round(1000 * dt, 1),
                   tokens_per_s=round(args.batch * (args.src_len + args.tgt_len) / dt))
    except torch.OutOfMemoryError:
        row.update(error="out of memory")
    except Exception as e:  # noqa: BLE001 - record and go on with the other configurations
        row.update(error=f"{type(e).__name__}: {str(e)[:200]}")
    finally:
        del model, opt
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["shape", "variant", "grad_ckpt", "params_m", "trainable_pct", "peak_gib", "vs_full_bf16", "step_ms", "tokens_per_s", "error"]
    ref = {(r["shape"], r["grad_ckpt"]): r.get("peak_gib") for r in rows if r["variant"] == "full_bf16"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        base = ref.get((r["shape"], r["grad_ckpt"]))
        r = {**r, "vs_full_bf16": f"{100 * r['peak_gib'] / base:.0f}%" if base and r.get("peak_gib") else ""}
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def summary(env: dict[str, Any], rows: list[dict[str, Any]], seconds: float) -> str:
    return (f"Device: {env['device']} · batch {env['batch']} x {env['src_len']} source + {env['tgt_len']} target tokens · "
            f"LoRA r={env['lora_rank']} on q,k,v,o · {env['steps']} timed steps after {env['warmup']} warm-up · "
            f"torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}, bitsandbytes "
            f"{env['bitsandbytes']} · {round(seconds)} s total\n\n{table(rows)}\n")


def write_doc(doc: str, text: str, command: str) -> None:
    """Replace (or append) the `gpu-efficiency` block of docs/benchmarks.md (same markers as dsilab.experiments.runner)."""
    begin, end = "<!-- bench:gpu-efficiency -->", "<!-- /bench:gpu-efficiency -->"
    body = f"{begin}\n### GPU efficiency (benchmarks/gpu_efficiency.py)\n\nCommand: `{command}`\n\n{text}{end}"
    old = open(doc, encoding="utf-8").read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + body + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + body + "\n"
    with open(doc, "w", encoding="utf-8") as f:
        f.write(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="JSON result path (required unless --from-json)")
    ap.add_argument("--from-json", help="only re-render a previous result (no measuring), e.g. to update --doc")
    ap.add_argument("--doc", help="also replace the gpu-efficiency section of this Markdown file (docs/benchmarks.md)")
    ap.add_argument("--command", default="python benchmarks/gpu_efficiency.py --out build/bench/gpu_efficiency.json",
                    help="the command line to quote in --doc")
    ap.add_argument("--shapes", default="t5-small,t5-base,t5-large")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--src-len", type=int, default=128)
    ap.add_argument("--tgt-len", type=int, default=8, help="docid tokens + EOS")
    ap.add_argument("--vocab", type=int, default=32128)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--budget-s", type=float, default=450, help="skip the remaining runs after this many seconds")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny shapes, batch 4 x 16 tokens, 2 steps")
    args = ap.parse_args()
    if args.from_json:
        blob = json.load(open(args.from_json))
        text = summary(blob["environment"], blob["results"], blob["seconds"])
        print(text)
        if args.doc:
            write_doc(args.doc, text, args.command)
        return
    if not args.out:
        ap.error("--out is required (where to write the JSON)")
    shapes = {k: v for k, v in SHAPES.items() if k in args.shapes.split(",")}
    if args.tiny:
        shapes, args.batch, args.src_len, args.tgt_len, args.vocab, args.steps, args.warmup = TINY, 4, 16, 4, 512, 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    import bitsandbytes
    import peft
    import transformers

    env = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
           "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "bitsandbytes": bitsandbytes.__version__, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "batch": args.batch, "src_len": args.src_len, "tgt_len": args.tgt_len, "vocab": args.vocab,
           "lora_rank": args.rank, "steps": args.steps, "warmup": args.warmup, "optimizer": "torch AdamW",
           "peak_memory": "torch.cuda.max_memory_allocated over the timed steps" if device.type == "cuda" else "process max RSS"}
    plan = [(n, s, v, g, 0.0) for n, s in shapes.items() for g in (False, True) for v in VARIANTS]
    plan += [(n, s, "full_bf16", False, args.sparsity) for n, s in shapes.items()]
    rows, t_start = [], time.perf_counter()
    for name, shape, variant, gc_on, sparsity in plan:
        if time.perf_counter() - t_start > args.budget_s:
            rows.append({"shape": name, "variant": variant, "grad_ckpt": gc_on, "error": "skipped (time budget)"})
            continue
        row = measure(name, shape, variant, gc_on, args, device, sparsity)
        rows.append(row)
        print(json.dumps(row), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:  # after every run, so a timeout keeps what was measured
            json.dump({"environment": env, "results": rows, "seconds": round(time.perf_counter() - t_start)}, f, indent=2)
    text = summary(env, rows, time.perf_counter() - t_start)
    print("\n" + text)
    if args.doc:
        write_doc(args.doc, text, args.command)


if __name__ == "__main__":
    main()
