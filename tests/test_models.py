"""Models: backbones build offline, docid tokens are single tokens, lengths come from the data."""
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.docids import make_docids
from dsilab.models import build_model
from dsilab.tasks import TaskConfig, build_examples

TINY = dict(vocab_size=120, d_model=16, layers=1, decoder_layers=1, heads=2, d_ff=32)


@pytest.fixture(scope="module")
def setup():
    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=2, doc_len=15, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=30, seed=0)
    tree = make_docids(coll, "naive")
    return coll, tree, build_examples(coll, tree, TaskConfig(indexing="bidirectional"))


def test_t5_scratch_docid_tokens_and_lengths(setup):
    coll, tree, ex = setup
    model = build_model("t5-scratch", tree, ex, **TINY)
    for d in coll.doc_ids[:5]:
        ids = model.tokenizer(tree.text(d), add_special_tokens=False)["input_ids"]
        assert model.tokenizer.convert_ids_to_tokens(ids) == tree.tokens(d)  # one token per digit
        assert model.docid_sequences()[d] == ids + [model.eos_id]
    longest = max(len(model.tokenizer(e.source, add_special_tokens=False)["input_ids"]) for e in ex)
    assert model.max_source_len == longest + 1
    batch = model.batch(ex[:4])
    assert batch["input_ids"].shape[1] <= model.max_source_len
    loss = model(**batch)
    assert torch.isfinite(loss) and loss.item() > 0


def test_same_seed_same_weights(setup):
    coll, tree, ex = setup
    a = build_model("t5-scratch", tree, ex, seed=3, **TINY)
    b = build_model("t5-scratch", tree, ex, seed=3, **TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_long_queries_are_truncated_with_a_warning(setup):
    coll, tree, ex = setup
    model = build_model("t5-scratch", tree, ex, **TINY)
    with pytest.warns(UserWarning, match="truncated"):
        enc = model.tokenize_sources(["word " * (5 * model.max_source_len)])
    assert enc["input_ids"].shape[1] == model.max_source_len


def test_minilm_seq2seq_builds_offline_with_frozen_encoder(setup):
    coll, tree, ex = setup
    model = build_model("minilm-seq2seq", tree, ex, decoder_layers=1)
    assert model.encoder_frozen and 0 < model.num_parameters(True) < model.num_parameters()
    ids = model.tokenizer(tree.text(coll.doc_ids[3]), add_special_tokens=False)["input_ids"]
    assert model.tokenizer.convert_ids_to_tokens(ids) == tree.tokens(coll.doc_ids[3])
    model.train()
    assert not model.net.get_encoder().training  # frozen encoder: no dropout, so cached states are exact
    assert torch.isfinite(model(**model.batch(ex[:2])))


def test_bad_backbone_and_adapter(setup, monkeypatch):
    coll, tree, ex = setup
    with pytest.raises(DsilabError, match="unknown backbone"):
        build_model("bogus", tree, ex)
    with pytest.raises(DsilabError, match="unknown adapter"):
        build_model("t5-scratch", tree, ex, adapter="lorax", **TINY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dsilab.core import hub_available
    hub_available.cache_clear()
    with pytest.raises(DsilabError, match="t5-scratch"):
        build_model("t5-small", tree, ex)
    with pytest.raises(DsilabError, match="needs the training examples"):
        build_model("t5-scratch", tree, [])


def test_atomic_docids_start_at_their_documents_encoding(setup):
    """docid_init='encoder': an atomic docid's output row points where its document's pooled encoding does."""
    coll, _, _ = setup
    tree = make_docids(coll, "atomic")
    ex = build_examples(coll, tree, TaskConfig(query_split=None))
    model = build_model("minilm-seq2seq", tree, ex, decoder_layers=1)
    rand = build_model("minilm-seq2seq", tree, ex, decoder_layers=1, docid_init="random")
    out = model.net.get_output_embeddings().weight
    assert out.data_ptr() == model.net.get_decoder().get_input_embeddings().weight.data_ptr()  # tied: one table
    src = {e.doc_id: e.source for e in ex if e.task == "index"}
    docs = coll.doc_ids[:6]
    hidden, mask = model.encode_texts([src[d] for d in docs])
    pooled = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    rows = out[[model.docid_token_ids[tree.tokens(d)[0]] for d in docs]].detach()
    cos = torch.nn.functional.normalize(rows, dim=-1) @ pooled.T
    assert torch.allclose(cos.diagonal(), torch.ones(len(docs)), atol=1e-5)
    assert (cos.argmax(dim=1) == torch.arange(len(docs))).all()
    # the base vocabulary is untouched, and 'random' leaves the docid rows where the seed put them
    assert torch.equal(out[: model.base_vocab], rand.net.get_output_embeddings().weight[: model.base_vocab])
    assert not torch.allclose(rows, rand.net.get_output_embeddings().weight[rows.new_tensor(
        [model.docid_token_ids[tree.tokens(d)[0]] for d in docs]).long()])
    with pytest.raises(DsilabError, match="pretrained encoder"):
        build_model("t5-scratch", tree, ex, docid_init="encoder", **TINY)


def test_shared_encoder_cache_keeps_each_models_length(setup):
    # two models sharing the frozen MiniLM but cutting inputs at different lengths must not serve each other's states
    coll, tree, ex = setup
    text = ex[0].source
    short = build_model("minilm-seq2seq", tree, ex, decoder_layers=1, max_source_len=4)
    full = build_model("minilm-seq2seq", tree, ex, decoder_layers=1)
    hidden_short, mask_short = short.encode_texts([text])
    hidden_full, mask_full = full.encode_texts([text])
    assert mask_short.sum() == 4 and mask_full.sum() > 4
    assert torch.equal(short.encode_texts([text])[0], hidden_short)  # and the memo serves the same states again


def test_cosine_head_and_soft_input_hooks_are_off_by_default_and_faithful(setup):
    """The hooks DGI uses: a cosine docid head (learnable scale) and decoder input embeddings at training time."""
    coll, tree, ex = setup
    model = build_model("t5-scratch", tree, ex, **TINY)
    assert model.cosine_scale is None and model.soft_inputs is None         # defaults: DSI unchanged
    batch = model.batch([e for e in ex if e.task == "index"][:4])
    dec = model.shift_right(batch["labels"])
    model.eval()
    hidden = model.encode(batch["input_ids"], batch["attention_mask"])
    plain = model.docid_logits(hidden, batch["attention_mask"], dec)
    rows = model.net.get_decoder().get_input_embeddings()(dec)
    assert torch.allclose(plain, model.docid_logits(hidden, batch["attention_mask"], dec, rows), atol=1e-5)
    model.use_cosine_head(30.0)
    cos = model.docid_logits(hidden, batch["attention_mask"], dec)
    assert cos.abs().max() <= 30.0 + 1e-3 and model.cosine_scale.requires_grad

    class Zero(torch.nn.Module):  # a soft-input hook: zero inputs and a constant extra loss
        def forward(self, m, labels, dec):
            return torch.zeros(*dec.shape, m.net.config.d_model), torch.tensor(1.0)

    model.train()
    text_rows = torch.zeros(4, dtype=torch.bool)
    base = model(**batch, text_rows=text_rows)
    model.soft_inputs = Zero()
    assert model(**batch, text_rows=text_rows).item() != pytest.approx(base.item())
    model.eval()
    with torch.no_grad():  # never at evaluation time
        model.soft_inputs = None
        ref = model(**batch, text_rows=text_rows)
        model.soft_inputs = Zero()
        assert model(**batch, text_rows=text_rows).item() == pytest.approx(ref.item())
    with pytest.raises(DsilabError, match="offline backbone"):
        type(model).use_cosine_head(type("M", (), {"net": object()})(), 30.0)


def test_adapters_resolve_lazily_in_a_fresh_process():
    """build_model(adapter="dgi" | "lora") needs no earlier import of its module: the registry names where each lives."""
    import subprocess
    import sys

    code = ("import sys; from dsilab.models import resolve_adapter; "
            "assert 'dsilab.dgi.seq2seq' not in sys.modules and 'dsilab.adapters' not in sys.modules; "
            "print(resolve_adapter('dgi').__name__, resolve_adapter('lora').__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["install_dgi", "lora"]


def test_an_unknown_adapter_is_named_with_the_known_ones():
    from dsilab import DsilabError
    from dsilab.models import resolve_adapter

    with pytest.raises(DsilabError, match="unknown adapter 'lorra'.*'lora'"):
        resolve_adapter("lorra")


def test_a_trained_tokenizer_is_the_same_on_every_run(lab, tmp_path, monkeypatch):
    """The Unigram trainer's scores differ in their last digits between runs; the saved tokenizer must not (same
    pieces, ids and scores), or one seed would give different models on two machines."""
    from dsilab.models import _train_tokenizer

    texts = list(lab.contents)
    runs = []
    for i in range(3):
        monkeypatch.setenv("DSILAB_CACHE", str(tmp_path / str(i)))  # a fresh cache: each run trains
        runs.append(_train_tokenizer(texts, 2000).backend_tokenizer.to_str())
    assert runs[0] == runs[1] == runs[2]
