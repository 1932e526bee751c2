"""DGI on the DSI backbone: the one DSI recipe (`dsilab.recipes.train_dsi`) with learned residual codes and three switches.

    result = train_dgi(collection, Recipe(), DGIOptions())      # a DSIResult: .search(queries, k) -> Run
    result.codes.report()                                       # collisions and codebook use of its docids

What makes it DGI (Differentiable Geometric Indexing, arXiv 2603.10409), each a switch of `DGIOptions`:

* **Learned residual docids** (`dsilab.docids.residual`): L levels x K codes, k-means initialised, collision-aware.
  Each (level, code) is its own docid token, and that token's row in the decoder's embedding matrix is
  initialised to the codebook vector (times the scale of the word rows).
* **Symmetric weight sharing** (`share_weights`): the codebook rows ARE the decoder's docid-token input
  embeddings AND its output classifier rows (minilm-seq2seq ties them; `share_weights=False` unties the output
  rows into a copy: the ablation). The quantiser below reads its codebook from those same rows, so the retrieval
  loss, the reconstruction loss and the decoder's inputs all move one set of vectors.
* **Gumbel-softmax soft teacher forcing** (`gumbel`): at training time the decoder's input after level l is not
  the row of the document's code but a Gumbel-softmax mixture of level l's rows, weighted by the quantiser's
  assignment of the document's residual (torch's `gumbel_softmax`, temperature annealed 1.0 -> 0.1 over
  `anneal_steps`). Gradients of the retrieval loss thus reach the assignment and every codebook row it weighs.
* **Scaled cosine logits** (`cosine`): `DSIModel.use_cosine_head(scale=30, learnable)`: norms cannot make a
  frequent code win.

Training goes through the shared loop (`dsilab.train`: AMP, resume, progress, convergence): DGI is installed on the
built `DSIModel` through `build_model`'s adapter hook (`adapter="dgi"`, found through `dsilab.models.ADAPTERS`), and search is
`dsilab.decode.search` over the trie of the residual docids (`DSIResult.search`).

Departures from the paper, and why (its full text is not stored here; its abstract and the project's notes are):
* Document assignments (hence the docids and the trie) are fixed after the collision-aware k-means: the shared
  loop packs its labels once and decoding needs one trie. The Gumbel path still trains the codebook rows through
  the soft inputs and the assignment probabilities; what it cannot do is move a document to another code.
* No RQ-VAE encoder/decoder, no contrastive term, one learning rate: the quantiser's input is the fixed MiniLM
  document embedding; its losses are a reconstruction term (the sum of the document's code rows should rebuild
  its scaled embedding) and an assignment term (the quantiser should still pick the document's own codes).
* The annealing clock counts training forward passes (a buffer, saved in checkpoints, so resume continues it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core import DsilabError
from ..data import Collection
from ..models import DSIModel
from ..recipes import DSIResult, Recipe, train_dsi
from ..docids.residual import ResidualCodes, collection_codes


def anneal(step: int, total: int, start: float, end: float) -> float:
    """Exponential schedule from `start` (step 0) to `end` (step >= total): the Gumbel-softmax temperature."""
    if total <= 0:
        return end
    t = min(max(step / total, 0.0), 1.0)
    return float(start * (end / start) ** t)


@dataclass(frozen=True)
class DGIOptions:
    """The DGI switches (all on = DGI) and the quantiser's shape and losses."""

    levels: int = 3                 # residual levels (an extra one is added only where collisions need it)
    codes: int = 16                 # codes per level
    gumbel: bool = True             # Gumbel-softmax soft teacher forcing (False: the docid's own rows, as DSI)
    share_weights: bool = True      # codebook = decoder input rows = output rows (False: untied output rows)
    cosine: bool = True             # scaled cosine logits (False: inner product + bias, as DSI)
    scale: float = 30.0             # initial cosine scale (learnable)
    tau_start: float = 1.0          # Gumbel-softmax temperature, annealed exponentially ...
    tau_end: float = 0.1            # ... to this value over `anneal_steps` training steps
    anneal_steps: int = 1000
    assign_temperature: float = 0.05  # softness of the quantiser's assignment (of squared distances / scale^2)
    w_recon: float = 0.1            # reconstruction loss weight
    w_assign: float = 0.1           # assignment loss weight

    def __post_init__(self) -> None:
        if min(self.tau_start, self.tau_end, self.assign_temperature, self.scale) <= 0:
            raise DsilabError("DGIOptions: tau_start, tau_end, assign_temperature and scale must be > 0.")
        if self.levels < 1 or self.codes < 2 or self.anneal_steps < 1:
            raise DsilabError("DGIOptions needs levels >= 1, codes >= 2 and anneal_steps >= 1.")

    @property
    def label(self) -> str:
        off = [name for name, on in (("Gumbel soft TF", self.gumbel), ("weight sharing", self.share_weights),
                                     ("cosine logits", self.cosine)) if not on]
        return "DGI" + (f" w/o {', '.join(off)}" if off else "")


class SoftTeacherForcing(nn.Module):
    """Decoder inputs for docid rows at training time: Gumbel-softmax mixtures of each level's codebook rows.

    Called by `DSIModel.forward` (its `soft_inputs` hook) with the labels and the shifted decoder input ids;
    returns (input embeddings, reconstruction + assignment loss). The codebook of level l is read, live, from the
    decoder's input embedding rows of level l's tokens (the shared rows).
    """

    def __init__(self, model: DSIModel, rq: ResidualCodes, scale: float, opts: DGIOptions):
        super().__init__()
        tree = model.docids
        self.levels, self.opts = rq.levels, opts
        tok = model.docid_token_ids
        # level l's tokens (used codes only, in code order) and where each document's code sits among them
        rows, self.code_pos = [], []
        for level in range(rq.levels):
            used = sorted(set(rq.codes[:, level].tolist()))
            rows.append(torch.tensor([tok[tree.token(rq.digit(level, c))] for c in used]))
            where = {c: i for i, c in enumerate(used)}
            self.code_pos.append(torch.tensor([where[c] for c in rq.codes[:, level].tolist()]))
        self.rows = rows
        self.register_buffer("doc_emb", torch.from_numpy(rq.embeddings).float() * scale, persistent=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))   # the annealing clock (in checkpoints)
        self.scale = scale
        self.depth = int(tree.depths.max())              # the quantiser's levels, plus a counter where one was needed
        self._doc_of = {tuple(tok[t] for t in tree.tokens(d)): i for i, d in enumerate(rq.doc_ids)}
        self.tau = opts.tau_start

    def forward(self, model: DSIModel, labels: torch.Tensor, dec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.tau = anneal(int(self.step), self.opts.anneal_steps, self.opts.tau_start, self.opts.tau_end)
        self.step += 1
        table = model.net.get_decoder().get_input_embeddings()
        embeds = table(dec)
        L = self.levels
        docs = torch.tensor([self._doc_of[tuple(r)] for r in labels[:, : self.depth].tolist()], device=labels.device)
        residual = self.doc_emb[docs]
        target_norm = (residual ** 2).sum(-1).mean().clamp(min=1e-9)
        mixes, assign = [], residual.new_zeros(())
        for level in range(L):
            C = table.weight[self.rows[level].to(labels.device)]                       # live shared codebook rows
            d2 = ((residual[:, None, :] - C[None].to(residual.dtype)) ** 2).sum(-1)
            logits = -d2 / (self.scale ** 2 * self.opts.assign_temperature)
            own = self.code_pos[level].to(labels.device)[docs]
            assign = assign + F.cross_entropy(logits.float(), own)
            q = F.gumbel_softmax(logits.float(), tau=self.tau, dim=-1)
            mixes.append((q.to(C.dtype) @ C))
            residual = residual - C[own].to(residual.dtype)                             # the document's own path
        recon = (residual ** 2).sum(-1).mean() / target_norm
        soft = torch.stack(mixes, 1).to(embeds.dtype)                                    # (B, L, hidden)
        embeds = torch.cat([embeds[:, :1], soft, embeds[:, L + 1 :]], 1)                 # position l+1 follows level l
        return embeds, self.opts.w_recon * recon + self.opts.w_assign * assign / L


def install_dgi(model: DSIModel, for_search: bool = False, **options: Any) -> DSIModel:
    """The "dgi" adapter: codebook rows into the docid tokens' rows, and the switches of `DGIOptions(**options)`.

    The model's docids must be a residual tree from `ResidualCodes.tree()` (it carries its quantiser). for_search:
    the network of a saved DGI model, whose weights are read next (`load_model`): its heads, without the quantiser,
    which only training needs.
    """
    opts = DGIOptions(**options)
    rq = model.docids.params.get("quantiser")
    if for_search and model.docids.kind == "residual":
        _dgi_heads(model, opts)
        return model
    if model.docids.kind != "residual" or not isinstance(rq, ResidualCodes):
        raise DsilabError("the 'dgi' adapter needs residual docids: build the tree with dsilab.docids.residual "
                          "(ResidualCodes.tree()) and pass it to train_dsi/train_dgi.")
    net = model.net
    inputs = net.get_decoder().get_input_embeddings().weight
    outputs = net.get_output_embeddings().weight
    if rq.embeddings.shape[1] != inputs.shape[1]:
        raise DsilabError(f"the codebooks have {rq.embeddings.shape[1]} dimensions, the decoder's rows {inputs.shape[1]}: "
                          "quantise embeddings of the decoder's width (MiniLM's 384 for minilm-seq2seq).")
    with torch.no_grad():
        scale = float(inputs[: model.base_vocab].float().norm(dim=-1).mean())
        for level, cb in enumerate(rq.codebooks):
            for code in sorted(set(rq.codes[:, level].tolist())):
                t = model.docid_token_ids[model.docids.token(rq.digit(level, code))]
                inputs[t] = torch.from_numpy(cb[code]).to(inputs.dtype) * scale
                outputs[t] = inputs[t]
    _dgi_heads(model, opts)
    if opts.gumbel:
        model.soft_inputs = SoftTeacherForcing(model, rq, scale, opts)
    return model


def _dgi_heads(model: DSIModel, opts: DGIOptions) -> None:
    """The output side of DGI's switches: untied output rows (`share_weights` off) and the scaled cosine head."""
    net = model.net
    if not opts.share_weights:
        head = net.get_output_embeddings()
        if head.weight is net.get_decoder().get_input_embeddings().weight:  # untie: the classifier gets its own copy
            head.weight = nn.Parameter(head.weight.detach().clone())      # of the rows (same start)
    if opts.cosine:
        model.use_cosine_head(opts.scale, learn=True)
    model.dgi_options = opts




@dataclass
class DGIResult(DSIResult):
    """A DSIResult (same `search(queries, k) -> Run`) plus the residual codes its docids came from."""

    codes: ResidualCodes | None = None
    options: DGIOptions | None = None

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["label"] = self.options.label if self.options else "DGI"
        out["codes"] = self.codes.report() if self.codes else None
        return out


def train_dgi(collection: Collection, recipe: Recipe = Recipe(), options: DGIOptions = DGIOptions(),
              codes: ResidualCodes | None = None, progress: bool = False, checkpoint_dir: str | None = None) -> DGIResult:
    """Train DGI with the one DSI recipe: same backbone, examples, loop, stopping rule and search as `train_dsi`.

    codes: residual codes made elsewhere (default: `collection_codes(collection, options.levels, options.codes,
    recipe.seed)`). The recipe's adapter becomes "dgi" (with the options); everything else is the recipe's.
    """
    if recipe.adapter != "full":
        raise DsilabError(f"train_dgi installs its own adapter ('dgi'); the recipe asks for {recipe.adapter!r}.")
    codes = codes or collection_codes(collection, options.levels, options.codes, recipe.seed)
    r = replace(recipe, adapter="dgi", adapter_kwargs=asdict(options))
    res = train_dsi(collection, r, tree=codes.tree(), progress=progress, checkpoint_dir=checkpoint_dir)
    return DGIResult(**{f.name: getattr(res, f.name) for f in fields(DSIResult)}, codes=codes, options=options)
