"""Parameter-efficient DSI: LoRA and QLoRA (4-bit NF4 base weights) on any DSI backbone, through `peft`.

    model = build_model("minilm-seq2seq", tree, examples, adapter="lora", adapter_kwargs={"r": 8})
    model = build_model("t5-scratch", tree, examples, adapter="qlora", adapter_kwargs={"double_quant": True})

* **LoRA** (Hu et al., 2021): every targeted projection W stays frozen and learns a low-rank update
  W + (alpha/r) * B @ A, with A (r x in) and B (out x r); B starts at zero, so training starts from the
  base model exactly. Targets default to the attention projections of each backbone family (`DEFAULT_TARGETS`).
* **New parts train in full.** LoRA adapts *pretrained* weights. What the DSI model adds is new: the
  docid token rows of the embeddings always train (peft `trainable_token_indices`, the tied output head
  follows), and modules built from scratch (`NEW_MODULES`, e.g. the layers of the new decoder of
  ``minilm-seq2seq``) train in full; pass `train_modules=()` to freeze them too.
* **QLoRA** (Dettmers et al., 2023): the frozen linear layers are stored in 4-bit NormalFloat (NF4,
  `bitsandbytes`), optionally with double quantisation of the block scales; the LoRA adapters, the
  embeddings, layer norms and new modules stay in higher precision. Runs on CUDA and (slowly) on CPU
  with bitsandbytes >= 0.45; elsewhere `DsilabError` says why and to use ``adapter="lora"``.

`build_model(adapter="lora" | "qlora")` finds these functions through `dsilab.models.ADAPTERS`.
`save_adapter` / `load_adapter` store only what trained (kilobytes to megabytes instead of the model);
`merge_lora` folds the adapters back into plain dense layers for inference (no extra matmuls).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .core import DsilabError, check_choice
from .models import DSIModel

# Attention projections per model family (the modules LoRA wraps by default). A string is a regex that
# peft matches against the full module name; a list matches name suffixes.
DEFAULT_TARGETS: dict[str, Any] = {
    "t5": ["q", "k", "v", "o"],                                   # self- and cross-attention of T5
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "bert": r".*attention\.(self\.(query|key|value)|output\.dense)",
}
# Modules a backbone builds from scratch: nothing pretrained to adapt, so they train in full.
# minilm-seq2seq: the decoder's layers, positions and head transform are new; its word embeddings start
# from MiniLM's (only their docid rows train, the tied output head follows).
NEW_MODULES: dict[str, tuple[str, ...]] = {
    "minilm-seq2seq": ("decoder.bert.encoder", "decoder.bert.embeddings.position_embeddings",
                       "decoder.bert.embeddings.LayerNorm", "decoder.cls.predictions.transform"),
}
# For those backbones, LoRA targets only the pretrained part (prefix of the module names).
PRETRAINED_PART: dict[str, str] = {"minilm-seq2seq": "encoder"}


def _family(net: nn.Module) -> str:
    cfg = net.config
    kind = cfg.encoder.model_type if cfg.model_type == "encoder-decoder" else cfg.model_type
    for family in DEFAULT_TARGETS:
        if family in kind:
            return family
    raise DsilabError(f"no default LoRA targets for model type {kind!r}: pass adapter_kwargs={{'target_modules': "
                      f"[...]}} with the names of its attention projections (see model.net.named_modules()).")


def default_targets(model: DSIModel) -> Any:
    """The modules LoRA wraps by default for this backbone: attention projections of the pretrained part."""
    targets = DEFAULT_TARGETS[_family(model.net)]
    part = PRETRAINED_PART.get(model.backbone)
    if part is None:
        return targets
    body = targets if isinstance(targets, str) else r".*\.(" + "|".join(targets) + ")"
    return rf"{part}\.{body}"


def _docid_token_indices(model: DSIModel) -> dict[str, list[int]]:
    """Embedding module name -> docid token ids: the rows that are new and must train."""
    ids = sorted(model.docid_token_ids.values())
    out = {}
    for name, mod in model.net.named_modules():
        if isinstance(mod, nn.Embedding) and mod.num_embeddings > max(ids):
            if name.split(".")[-1] in {"shared", "word_embeddings", "embed_tokens"}:
                out[name] = ids
    # T5 shares one matrix between encoder, decoder and head: train its rows once, on `shared`.
    if "shared" in out:
        out = {"shared": ids}
    return out


def _untie_head_from_decoder_embeddings(model: DSIModel, tokens: dict[str, list[int]]) -> None:
    """Give the output layer its own docid-row adapter when it is tied to a decoder embedding peft does not see as tied.

    peft's token adapter follows a tie only between the model's *input* embeddings and its head. In minilm-seq2seq
    the head is tied to the decoder's word embeddings instead, so without this the head's docid rows (the atomic
    docids themselves) never trained, and merging wrote the embeddings' delta into the shared matrix, changing the
    head: a different function after `merge_lora`. A separate copy of the matrix for the head, with its own adapter,
    keeps training and merging exact (one extra frozen matrix in memory).
    """
    head = model.net.get_output_embeddings()
    if head is None:
        return
    tied = [name for name, m in model.net.named_modules() if isinstance(m, nn.Embedding) and m.weight is head.weight]
    if not tied or tied[0] not in tokens or model.net.get_submodule(tied[0]) is model.net.get_input_embeddings():
        return
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    tokens[next(name for name, m in model.net.named_modules() if m is head)] = tokens[tied[0]]


def _untied_head(model: DSIModel) -> str | None:
    """The output layer's module name when it has its own weight (e.g. flan-t5, T5 v1.1); None when tied."""
    head = model.net.get_output_embeddings()
    if head is None or any(m.weight is head.weight for m in model.net.modules() if isinstance(m, nn.Embedding)):
        return None
    return next(name for name, m in model.net.named_modules() if m is head)


def lora(model: DSIModel, r: int = 8, alpha: int = 16, dropout: float = 0.05, target_modules: Any = None,
         train_modules: tuple[str, ...] | None = None, train_docid_tokens: bool = True) -> DSIModel:
    """Wrap `model.net` with LoRA adapters in place; only adapters, docid rows and new modules train.

    r: adapter rank; alpha: scale (update = alpha/r * B@A); target_modules: peft targets (default:
    `default_targets`); train_modules: names of submodules of `model.net` that train in full (default:
    `NEW_MODULES` of the backbone); train_docid_tokens: let the docid token embeddings train.
    """
    from peft import LoraConfig, get_peft_model

    if r < 1 or alpha <= 0 or not 0 <= dropout < 1:
        raise DsilabError(f"lora: need r >= 1, alpha > 0, 0 <= dropout < 1 (got r={r}, alpha={alpha}, dropout={dropout}).")
    targets = default_targets(model) if target_modules is None else target_modules
    train_modules = NEW_MODULES.get(model.backbone, ()) if train_modules is None else tuple(train_modules)
    tokens = _docid_token_indices(model) if train_docid_tokens else None
    head = _untied_head(model)  # a head with a weight of its own from the start (T5 v1.1) trains in full
    if tokens:
        _untie_head_from_decoder_embeddings(model, tokens)
    if train_docid_tokens and head and head not in train_modules:  # its docid rows must learn too: train the head
        train_modules = (*train_modules, head)
    # Embedding rows inside a fully trained module need no token adapter.
    if tokens:
        tokens = {k: v for k, v in tokens.items() if not any(k == m or k.startswith(m + ".") for m in train_modules)} or None
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                     trainable_token_indices=tokens)
    try:
        with warnings.catch_warnings():
            # peft 0.21 probes `is_gradient_checkpointing`, an alias transformers 5 deprecates with a FutureWarning
            # on every LoRA build; the course never uses gradient checkpointing, so the warning is not about it.
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            net = get_peft_model(model.net, cfg)
    except ValueError as e:  # peft: "Target modules ... not found in the base model"
        raise DsilabError(f"lora: {e} Pass target_modules= names from model.net.named_modules().") from None
    base = net.get_base_model()
    for name in train_modules:
        try:
            sub = base.get_submodule(name)
        except AttributeError:
            raise DsilabError(f"lora: train_modules entry {name!r} is not a submodule of the {model.backbone} network.") from None
        for p in sub.parameters():
            p.requires_grad_(True)
    model.net = net
    model.adapter_kwargs = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": targets,
                            "train_modules": train_modules, "train_docid_tokens": train_docid_tokens}
    return model


# -- QLoRA --------------------------------------------------------------------------------------------------
def qlora_support(device: str | torch.device | None = None) -> tuple[bool, str]:
    """(can QLoRA run here?, why not). Needs bitsandbytes >= 0.45 and a CUDA or CPU device."""
    import importlib.metadata as md

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        version = md.version("bitsandbytes")
    except md.PackageNotFoundError:
        return False, "bitsandbytes is not installed (pip install bitsandbytes)"
    major, minor = (int(x) for x in version.split(".")[:2])
    if device.type not in ("cuda", "cpu"):
        return False, f"bitsandbytes 4-bit layers run on CUDA and CPU, not on {device.type!r}"
    if device.type == "cpu" and (major, minor) < (0, 45):
        return False, f"bitsandbytes {version} has no CPU backend (needs >= 0.45)"
    try:  # the real test: quantise and run one tiny layer
        layer = _to_4bit(nn.Linear(64, 64), "nf4", True, torch.float32, device)
        layer(torch.zeros(1, 64, device=device))
    except Exception as e:  # noqa: BLE001 - any backend failure means "cannot run here", reported below
        return False, f"bitsandbytes cannot run 4-bit layers on {device}: {type(e).__name__}: {e}"
    return True, ""


_LINEAR4BIT: type | None = None


def _linear4bit_class() -> type:
    """bitsandbytes' Linear4bit, plus loading of its own state_dict (needed to resume a QLoRA checkpoint).

    bitsandbytes saves the packed weight and its quantisation state (absmax, quant_map, ...) as extra keys,
    but only transformers' loader reads them back; plain `load_state_dict` rejects them as unexpected.
    """
    global _LINEAR4BIT
    if _LINEAR4BIT is None:
        import bitsandbytes as bnb

        class Linear4bit(bnb.nn.Linear4bit):
            def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs):
                stats = {k[len(prefix) + 7:]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix + "weight.")}
                packed = state_dict.pop(prefix + "weight", None)
                super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                              unexpected_keys, error_msgs)
                if packed is None or not stats:
                    return  # the weight stays reported as missing by strict loading
                missing_keys[:] = [k for k in missing_keys if k != prefix + "weight"]
                self.weight = bnb.nn.Params4bit.from_prequantized(packed, stats, requires_grad=False,
                                                                  device=self.weight.device, module=self)

        _LINEAR4BIT = Linear4bit
    return _LINEAR4BIT


def _to_4bit(linear: nn.Linear, quant_type: str, double_quant: bool, compute_dtype: torch.dtype,
             device: torch.device) -> nn.Module:
    """A 4-bit layer holding `linear`'s weight (quantised when moved to `device`)."""
    import bitsandbytes as bnb

    q = _linear4bit_class()(linear.in_features, linear.out_features, bias=linear.bias is not None,
                            compute_dtype=compute_dtype, compress_statistics=double_quant, quant_type=quant_type)
    q.weight = bnb.nn.Params4bit(linear.weight.data.float().cpu(), requires_grad=False, quant_type=quant_type,
                                 compress_statistics=double_quant, module=q)
    if linear.bias is not None:
        q.bias = nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    # bitsandbytes 0.50 repacks 4-bit weights into an inference-only layout on AVX512-BF16 CPUs at the first eval
    # forward and never unpacks them when training resumes: the next training step fails ("a view of a leaf Variable
    # ... in-place"), and DSI training evaluates between steps. It also crashes when the input width is not a whole
    # number of blocks. So the plain 4-bit layout stays, at some cost in CPU inference speed.
    q.support_avx512bf16_for_cpu = False
    return q.to(device)


def quantize_4bit(net: nn.Module, skip: tuple[str, ...] = (), quant_type: str = "nf4", double_quant: bool = True,
                  compute_dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> list[str]:
    """Replace every nn.Linear of `net` (except the output head and modules under `skip`) by a 4-bit layer.

    Hand-written because DSI models are built from configs, not loaded with `from_pretrained`, which is
    where transformers' BitsAndBytesConfig quantises. Returns the names of the quantised layers.
    """
    heads = {id(m) for m in (net.get_output_embeddings(),) if m is not None}
    # transformers' own list of layers that must stay in full precision (T5: "wo", whose input it casts
    # to the weight's dtype, which for a 4-bit weight would be uint8)
    keep = tuple(getattr(net, "_keep_in_fp32_modules", None) or ())
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and id(m) not in heads
             and not any(n == s or n.startswith(s + ".") for s in skip) and n.split(".")[-1] not in keep]
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        setattr(owner, child, _to_4bit(getattr(owner, child), quant_type, double_quant, compute_dtype, torch.device(device)))
    return names


def qlora(model: DSIModel, r: int = 8, alpha: int = 16, dropout: float = 0.05, target_modules: Any = None,
          train_modules: tuple[str, ...] | None = None, train_docid_tokens: bool = True, double_quant: bool = True,
          quant_type: str = "nf4", compute_dtype: str | None = None, device: str | None = None) -> DSIModel:
    """QLoRA: frozen linear layers in 4-bit `quant_type` (NF4), then LoRA adapters in `compute_dtype` on top.

    double_quant: also quantise the per-block scales (saves ~0.4 bit/weight); compute_dtype: the precision
    the 4-bit weights are dequantised to for each matmul ("float32" on CPU, "bfloat16" on CUDA by default);
    device: where the quantised model lives ("cuda" if available, else "cpu").
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ok, why = qlora_support(device)
    if not ok:
        raise DsilabError(f"QLoRA cannot run here: {why}. Use adapter='lora' (same adapters, 16/32-bit base weights).")
    if quant_type not in ("nf4", "fp4"):
        raise DsilabError(f"qlora: quant_type={quant_type!r}; choose 'nf4' (QLoRA's NormalFloat) or 'fp4'.")
    dtype_name = compute_dtype or ("bfloat16" if torch.device(device).type == "cuda" else "float32")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    check_choice("qlora compute_dtype", dtype_name, dtypes)
    train = NEW_MODULES.get(model.backbone, ()) if train_modules is None else tuple(train_modules)
    model.to(device)
    quantize_4bit(model.net, skip=train, quant_type=quant_type, double_quant=double_quant,
                  compute_dtype=dtypes[dtype_name], device=device)
    lora(model, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules, train_modules=train,
         train_docid_tokens=train_docid_tokens)
    model.adapter_kwargs.update(double_quant=double_quant, quant_type=quant_type, compute_dtype=dtype_name, device=device)
    return model


def _is_4bit(mod: nn.Module) -> bool:
    """A bitsandbytes 4-bit layer with its weight quantised (not a peft wrapper around one)."""
    w = getattr(mod, "weight", None)
    return (any(c.__name__ == "Linear4bit" and c.__module__.startswith("bitsandbytes") for c in type(mod).__mro__)
            and type(w).__name__ == "Params4bit" and getattr(w, "quant_state", None) is not None)


def _dequantized(layer: nn.Module) -> nn.Linear:
    """A float32 nn.Linear with the dequantised weight (and bias) of a 4-bit layer."""
    import bitsandbytes as bnb

    w = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    dense = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None, device=w.device)
    with torch.no_grad():
        dense.weight.copy_(w)
        if layer.bias is not None:
            dense.bias.copy_(layer.bias.float())
    return dense


def four_bit_layers(model: DSIModel | nn.Module) -> list[str]:
    """Names of the modules whose weights are stored in 4 bits (bitsandbytes Params4bit)."""
    net = model.net if isinstance(model, DSIModel) else model
    return [name for name, mod in net.named_modules() if _is_4bit(mod)]


@torch.no_grad()
def quantization_error(weight: torch.Tensor, quant_type: str = "nf4", double_quant: bool = True,
                       blocksize: int = 64) -> dict[str, float]:
    """Round-trip one weight matrix through 4-bit quantisation: relative error and storage bits per weight."""
    import bitsandbytes.functional as F

    w = weight.detach().float().cpu().contiguous()
    packed, state = F.quantize_4bit(w, blocksize=blocksize, compress_statistics=double_quant, quant_type=quant_type)
    back = F.dequantize_4bit(packed, state)
    stats = sum(v.numel() * v.element_size() for v in state.as_dict(packed=True).values() if isinstance(v, torch.Tensor))
    return {"relative_error": float((back - w).norm() / w.norm()),
            "max_abs_error": float((back - w).abs().max()),
            "bits_per_weight": 8 * (packed.numel() * packed.element_size() + stats) / w.numel()}


# -- inspection, saving, merging ---------------------------------------------------------------------------
def parameter_report(model: DSIModel) -> dict[str, Any]:
    """Trainable vs total parameters (4-bit weights counted as their logical size) and weight memory in MB."""
    total = trainable = 0
    nbytes = 0
    for p in model.parameters():
        n = p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()  # 2 weights per stored byte
        total += n
        trainable += n if p.requires_grad else 0
        nbytes += p.numel() * p.element_size()
    for b in model.buffers():
        nbytes += b.numel() * b.element_size()
    return {"trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / max(total, 1), 3),
            "weights_mb": round(nbytes / 2**20, 2)}


def trainable_state(model: DSIModel) -> dict[str, torch.Tensor]:
    """The tensors that training changed: adapters, docid token rows, new modules."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_adapter(model: DSIModel, path: str | Path) -> Path:
    """Save only what trained (plus the adapter settings): rebuild the model the same way, then `load_adapter`."""
    if getattr(model, "adapter", "full") not in ("lora", "qlora"):
        raise DsilabError(f"save_adapter: the model has adapter={getattr(model, 'adapter', 'full')!r}; "
                          "save a full model with torch.save(model.state_dict(), path).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": model.adapter, "backbone": model.backbone, "kwargs": model.adapter_kwargs,
                "state": trainable_state(model)}, path)
    return path


def load_adapter(model: DSIModel, path: str | Path) -> DSIModel:
    """Load `save_adapter`'s tensors into a model built with the same backbone, docids and adapter."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if (blob["adapter"], blob["backbone"]) != (getattr(model, "adapter", "full"), model.backbone):
        raise DsilabError(f"load_adapter: {path} holds a {blob['adapter']} adapter for {blob['backbone']}; build the "
                          f"model with build_model({blob['backbone']!r}, ..., adapter={blob['adapter']!r}) first.")
    own = dict(model.named_parameters())
    missing = [k for k in blob["state"] if k not in own or own[k].shape != blob["state"][k].shape]
    if missing:
        raise DsilabError(f"load_adapter: {len(missing)} tensor(s) do not fit this model (e.g. {missing[0]!r}); "
                          "build it with the same adapter_kwargs, docids and backbone sizes.")
    with torch.no_grad():
        for k, v in blob["state"].items():
            own[k].copy_(v.to(own[k].device, own[k].dtype))
    return model


def merge_lora(model: DSIModel) -> DSIModel:
    """Fold the adapters into plain dense layers for inference: W' = W + alpha/r * B@A, no peft left.

    For QLoRA the 4-bit base weight is dequantised first, so the merged model computes exactly what the
    trained one did, in float32, up to the compute dtype's rounding (bigger than the 4-bit model: merge
    for speed and portability, not memory).
    """
    from peft.tuners.lora import LoraLayer

    if getattr(model, "adapter", "full") not in ("lora", "qlora"):
        raise DsilabError("merge_lora: the model has no LoRA adapters (adapter='full').")
    net = model.net
    if model.adapter == "qlora":  # peft would re-round the merged weight to 4 bits: merge by hand instead
        for name, mod in list(net.named_modules()):
            if isinstance(mod, LoraLayer) and _is_4bit(mod.get_base_layer()):
                dense = _dequantized(mod.get_base_layer())
                with torch.no_grad():
                    dense.weight += sum(mod.get_delta_weight(a).float() for a in mod.active_adapters)
                parent, _, child = name.rpartition(".")
                setattr(net.get_submodule(parent), child, dense)
    model.net = net.merge_and_unload()
    for name in four_bit_layers(model.net):  # frozen 4-bit layers without adapters: dequantise too
        parent, _, child = name.rpartition(".")
        setattr(model.net.get_submodule(parent), child, _dequantized(model.net.get_submodule(name)))
    for p in model.net.parameters():
        p.requires_grad_(False)
    model.adapter = "merged"
    return model


