"""Checkers of chapter 07 · efficient training."""
from __future__ import annotations

from typing import Any

from ._registry import _close, checker


@checker("07.1")
def _lora_count(answer: Any, counted: int, layers: int = 6, projections: int = 4, d: int = 384, r: int = 8) -> tuple[bool, str]:
    """LoRA adds r * (d_in + d_out) weights to each target projection."""
    expected = layers * projections * r * (d + d)
    if expected != counted:
        return False, f"the formula gives {expected} but the model has {counted} adapter weights: the notebook's set-up changed."
    if answer == expected:
        return True, (f"right: {expected:,} = {layers} layers x {projections} projections x r={r} x ({d} + {d}). "
                      f"A full {d}x{d} projection has {d * d:,} weights: LoRA trains {2 * r / d:.1%} of each.")
    return False, (f"you have {answer!r}. Each target gets A (r x d_in) and B (d_out x r): r * (d_in + d_out) weights; "
                   "multiply by the number of target projections.")


@checker("07.2")
def _nf4_bits(answer: Any, weight: Any, blocksize: int = 128) -> tuple[bool, str]:
    """Bits per weight of NF4 with double quantisation at a given block size (lookup table aside)."""
    from ..adapters import quantization_error

    expected = 4 + 8 / blocksize + 32 / (blocksize * 256)
    measured = quantization_error(weight, "nf4", True, blocksize=blocksize)["bits_per_weight"]
    table = measured - expected  # what bitsandbytes stores once per matrix: the 256-entry fp32 table and an offset
    if _close(answer, expected, 0.005):
        return True, (f"right: {expected:.4f}. bitsandbytes measures {measured:.4f} on this {weight.numel():,}-weight "
                      f"matrix: the extra {table:.4f} bit is the fixed lookup table, spread over all weights. Bigger "
                      "blocks mean fewer scales, but one outlier then stretches the scale of more weights.")
    return False, (f"you have {answer!r}. Add 4 bits, the 8-bit scale shared by {blocksize} weights, and the fp32 "
                   "scale shared by 256 blocks.")


@checker("07.3")
def _lora_step_prediction(answer: Any, step_ms: dict) -> tuple[bool, str]:
    """A prediction: is LoRA's measured step time closer (on a log scale) to full fine-tuning's or to the frozen
    encoder's? `step_ms` maps "frozen encoder (default)", "full fine-tuning" and "LoRA r=8" to measured ms."""
    from math import log

    from ._registry import compare_prediction

    try:
        lora, full, frozen = (float(step_ms[k]) for k in ("LoRA r=8", "full fine-tuning", "frozen encoder (default)"))
    except (KeyError, TypeError, ValueError):
        return False, "pass step_ms={name: ms} for 'frozen encoder (default)', 'full fine-tuning' and 'LoRA r=8'."
    measured = "full fine-tuning" if abs(log(lora / full)) <= abs(log(lora / frozen)) else "frozen encoder"
    ok, said = compare_prediction(answer, measured, choices=("full fine-tuning", "frozen encoder"))
    why = (f"LoRA {lora:.0f} ms, full fine-tuning {full:.0f} ms, frozen encoder {frozen:.0f} ms. LoRA's adapters sit in "
           "every encoder layer, so every step runs the encoder forward and back-propagates through all of it, as full "
           "fine-tuning does; it only skips the weight gradients and the optimizer update of the frozen matrices, a "
           "small part of a step. The frozen-encoder default computes the encoder states once and never back-propagates "
           "into the encoder, which is where its speed comes from. LoRA saves memory for gradients and optimizer "
           "moments, not compute.")
    if measured == "frozen encoder":
        why += (" In this run LoRA came out closer to the frozen encoder: timings on a shared CPU move; rerun the "
                "variants on a quiet machine before drawing a conclusion.")
    return ok, f"{said} {why}"


@checker("07.4")
def _peak_not_state(answer: Any, results: dict,
                    variants: tuple[str, ...] = ("full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)")) -> tuple[bool, str]:
    """{variant: peak_mb - train_state_mb} from a committed efficiency result."""
    from ._registry import _fmt, _table_mismatch

    expected = {v: float(results[v]["peak_mb"]) - float(results[v]["train_state_mb"]) for v in variants}
    wrong = _table_mismatch(answer, expected, "{variant: peak_mb - train_state_mb}", tol=0.51)
    if wrong:
        return False, f"{wrong} Subtract each variant's train_state_mb from its peak_mb (table `cost`)."
    share = {v: expected[v] / float(results[v]["peak_mb"]) for v in variants}
    return True, (f"right: {_fmt(expected)} MB, that is {', '.join(f'{v} {s:.0%}' for v, s in share.items())} of each peak. "
                  "The rest of the peak (interpreter, libraries, data, tokenizer, activations for the backward pass, "
                  "buffers) does not shrink with LoRA or QLoRA, so their smaller training state is a small share of the peak.")
