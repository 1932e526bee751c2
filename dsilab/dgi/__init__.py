"""DGI: Differentiable Geometric Indexing (end-to-end generative retrieval), and its long-tail evaluation.

Generative retrieval usually fixes docids first (k-means) and trains the retriever after, so the
index never sees the retrieval loss (*optimisation blockage*); and inner-product logits let codes of
popular documents grow large norms and crowd out relevant tail documents (*geometric conflict*).
DGI learns the index with the retriever (Gumbel-softmax code assignments, soft teacher forcing,
one set of code vectors as centroids, decoder inputs and classifier weights) and scores codes by
cosine / temperature.

* `model`: `DGIConfig`, `DGIModel`, `gumbel_softmax`, `cosine_logits`, `code_usage`;
* `retriever`: `DGIRetriever(config).fit(...)` / `.search_embeddings(...) -> Run`, `disambiguate`, `CodeTrie`;
* `longtail`: Zipfian settings (`long_tail`, `synthetic_long_tail`), `report` (per-bucket Hits, popularity
  bias), `METHODS` (DSI-semantic, DGI, ablations), `run_method`, `compare`, `summarise`, `code_norms`;
* `geometry`: `norm_inflation_toy` (geometric conflict in miniature); `bench`: `dsilab bench dgi`.

DGI on the DSI backbone (the same DSIModel, recipe, training loop and beam search as DSI):

* `codes`: `residual_codes` / `collection_codes` -> `ResidualCodes` (L x K residual k-means, collision-aware,
  `.report()`, `.tree()` -> a DocidTree);
* `seq2seq`: `train_dgi(collection, Recipe(), DGIOptions())` -> `DGIResult` (`.search(queries, k) -> Run`); importing
  it registers the "dgi" adapter of `dsilab.models.build_model`;
* `natural`: `zipf_collection`, `popularity`, `buckets` (B0 head .. B4 tail), `popularity_bias`, `bias_band`, `bucket_table`.
"""
from .geometry import norm_inflation_toy
from .longtail import (BUCKETS, METHODS, LongTailSetting, code_norms, compare, dense_run, long_tail, report, run_method,
                       summarise, synthetic_long_tail, zipf_counts)
from .model import DGIConfig, DGIModel, anneal, code_usage, cosine_logits, gumbel_softmax, inner_logits
from .retriever import CodeTrie, DGIRetriever, beam_search, disambiguate
from .codes import ResidualCodes, collection_codes, residual_codes
from .natural import bias_band, bucket_table, buckets, popularity, popularity_bias, zipf_collection
from .seq2seq import DGIOptions, DGIResult, install_dgi, train_dgi

__all__ = ["BUCKETS", "METHODS", "CodeTrie", "DGIConfig", "DGIModel", "DGIRetriever", "LongTailSetting", "anneal",
           "beam_search", "code_norms", "code_usage", "compare", "cosine_logits", "dense_run", "disambiguate", "gumbel_softmax",
           "inner_logits", "long_tail", "ResidualCodes", "collection_codes", "residual_codes", "bias_band", "bucket_table",
           "buckets", "popularity", "popularity_bias", "zipf_collection", "DGIOptions", "DGIResult", "install_dgi", "train_dgi", "norm_inflation_toy", "report", "run_method", "summarise", "synthetic_long_tail", "zipf_counts"]
