"""DGI: Differentiable Geometric Indexing (end-to-end generative retrieval) on the DSI backbone, and its long-tail
evaluation.

Generative retrieval usually fixes docids first (k-means) and trains the retriever after, so the index never sees
the retrieval loss (*optimisation blockage*); and inner-product logits let codes of popular documents grow large
norms and crowd out relevant tail documents (*geometric conflict*). DGI trains the codebook with the retriever
(Gumbel-softmax soft teacher forcing, one set of code vectors as codebook, decoder inputs and classifier rows) and
scores codes by scaled cosine. Here it is a variant of the one DSI recipe: same `DSIModel`, loop and beam search.

* its docids, from `dsilab.docids.residual` (re-exported here): `residual_codes` / `collection_codes` ->
  `ResidualCodes` (L x K residual k-means, collision-aware, `.report()`, `.tree()` -> a DocidTree);
* `seq2seq`: `train_dgi(collection, Recipe(), DGIOptions())` -> `DGIResult` (`.search(queries, k) -> Run`); importing
  `build_model(adapter="dgi")` finds it;
* `natural`: `zipf_collection`, `popularity`, `buckets` (B0 head .. B4 tail), `popularity_bias`, `bias_band`, `bucket_table`;
* `geometry`: `norm_inflation_toy` (geometric conflict in miniature), `cosine_logits`, `inner_logits`.
"""
from ..docids.residual import ResidualCodes, collection_codes, residual_codes
from .geometry import cosine_logits, inner_logits, norm_inflation_toy
from .natural import bias_band, bucket_table, buckets, popularity, popularity_bias, zipf_collection, zipf_counts
from .seq2seq import DGIOptions, DGIResult, anneal, install_dgi, train_dgi

__all__ = ["DGIOptions", "DGIResult", "ResidualCodes", "anneal", "bias_band",
           "bucket_table", "buckets", "collection_codes", "cosine_logits", "inner_logits", "install_dgi",
           "norm_inflation_toy", "popularity", "popularity_bias", "residual_codes", "train_dgi",
           "zipf_collection", "zipf_counts"]
