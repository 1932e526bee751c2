"""DGI: Gumbel-softmax, soft teacher forcing gradients, weight sharing, cosine logits, unique identifiers."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.dgi import (CodeTrie, DGIConfig, DGIModel, DGIRetriever, LongTailSetting, cosine_logits, disambiguate,
                        gumbel_softmax, report, zipf_counts)

TINY = DGIConfig(levels=2, codes=4, dim=16, epochs=3, final_epochs=2, batch_size=16, beam=5, seed=0)


def clustered(n=40, dim=12, groups=4, seed=0):
    """Documents in a few tight clusters, plus noisy copies as training queries (a toy collection)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    docs = centres[np.arange(n) % groups] + 0.3 * rng.normal(size=(n, dim))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n), 2)
    queries = docs[owner] + 0.1 * rng.normal(size=(len(owner), dim))
    return docs.astype(np.float32), queries.astype(np.float32), owner


def test_gumbel_samples_are_distributions_and_harden_as_temperature_falls():
    torch.manual_seed(0)
    logits = torch.randn(64, 8)
    peaks = []
    for tau in (5.0, 1.0, 0.1, 0.01):
        y = gumbel_softmax(logits, tau)
        assert torch.all(y >= 0)
        assert torch.allclose(y.sum(-1), torch.ones(64), atol=1e-5)
        peaks.append(float(y.max(-1).values.mean()))
    assert peaks == sorted(peaks) and peaks[-1] > 0.99  # sharper as tau falls, ~one-hot at the end
    hard = gumbel_softmax(logits, 0.5, hard=True)
    assert torch.all((hard == 0) | (hard == 1)) and torch.all(hard.sum(-1) == 1)
    with pytest.raises(DsilabError):
        gumbel_softmax(logits, 0.0)


def _soft_tf_loss(model, z_doc, z_query, tau):
    """Retrieval loss of the L code positions only (no commitment/balance terms)."""
    qs, _, _ = model.assign(z_doc, tau)
    for q in qs:
        q.retain_grad()
    logits = model.decode_teacher_forced(z_query, qs)
    loss = sum(-(q * lg.log_softmax(-1)).sum(-1).mean() for q, lg in zip(qs, logits[: model.config.levels]))
    return loss, qs


def test_gradients_reach_codebooks_and_assignments_through_soft_teacher_forcing():
    torch.manual_seed(0)
    model = DGIModel(12, [4, 4, 10], TINY)
    docs, queries, _ = clustered(10)
    z_doc = model.encode(torch.from_numpy(docs))
    z_doc.retain_grad()
    loss, qs = _soft_tf_loss(model, z_doc, model.encode(torch.from_numpy(queries[:10])), tau=1.0)
    loss.backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in qs)     # the doc assignments get gradient
    assert z_doc.grad.abs().sum() > 0                                           # ... and through them the doc encoding
    assert all(model.codebooks[l].grad.abs().sum() > 0 for l in range(2))

    # the input path alone: the level-1 loss reaches codebook 0 only through the soft mixture fed to the decoder
    model.zero_grad()
    qs, _, _ = model.assign(model.encode(torch.from_numpy(docs)).detach(), 1.0)
    inputs = [qs[0].detach().requires_grad_(True)]
    logits = model.decode_teacher_forced(model.encode(torch.from_numpy(queries[:10])), inputs)
    logits[1].logsumexp(-1).sum().backward()
    assert inputs[0].grad.abs().sum() > 0 and model.codebooks[0].grad.abs().sum() > 0

    # without Gumbel (hard argmax codes) the retrieval loss cannot reach the assignment
    model.zero_grad()
    z_doc = model.encode(torch.from_numpy(docs))
    qs, _, _ = model.assign(z_doc, None)
    assert not any(q.requires_grad for q in qs)


def test_the_three_uses_of_a_code_vector_are_the_same_tensor():
    model = DGIModel(12, [4, 4, 10], TINY)
    for p in range(3):
        assert model.centroids(p) is model.input_table(p) is model.output_table(p) is model.codebooks[p]
    untied = DGIModel(12, [4, 4, 10], replace(TINY, share_weights=False))
    assert untied.input_table(0) is not untied.output_table(0)
    assert untied.input_table(0).data_ptr() != untied.centroids(0).data_ptr()


def test_cosine_logits_ignore_the_scale_of_a_code_vector_and_inner_products_do_not():
    torch.manual_seed(0)
    x, table = torch.randn(5, 16), torch.randn(6, 16)
    scaled = table.clone()
    scaled[2] *= 7.0
    assert torch.allclose(cosine_logits(x, table, 0.1), cosine_logits(x, scaled, 0.1), atol=1e-5)
    model = DGIModel(12, [6, 10], replace(TINY, levels=1))
    o = torch.randn(5, 16)
    before = model.logits(o, 0)
    with torch.no_grad():
        model.codebooks[0][2] *= 7.0
    assert torch.allclose(before, model.logits(o, 0), atol=1e-5)
    ip = DGIModel(12, [6, 10], replace(TINY, levels=1, logits="inner"))
    before = ip.logits(o, 0)
    with torch.no_grad():
        ip.codebooks[0][2] *= 7.0
    assert not torch.allclose(before[:, 2], ip.logits(o, 0)[:, 2])


def test_disambiguation_gives_every_document_its_own_identifier():
    paths = [(1, 2), (0, 3), (1, 2), (1, 2), (0, 3), (2, 2)]
    ids = disambiguate(paths)
    assert len(set(ids)) == len(ids)
    assert ids == [(1, 2, 0), (0, 3, 0), (1, 2, 1), (1, 2, 2), (0, 3, 1), (2, 2, 0)]
    with pytest.raises(DsilabError):
        CodeTrie({"a": (1, 2), "b": (1, 2)})


def test_fit_learns_unique_codes_and_search_returns_a_run():
    docs, queries, owner = clustered(40)
    ids = [f"d{i}" for i in range(40)]
    r = DGIRetriever(TINY).fit(ids, docs, queries, owner)
    codes = list(r.codes.values())
    assert len(set(codes)) == 40 and all(len(c) == 3 for c in codes)    # L levels + disambiguation
    assert sum(u["used"] for u in r.usage()[:2]) >= 2
    run = r.search_embeddings(["q0", "q1"], queries[:2], k=5)
    assert set(run) == {"q0", "q1"} and all(1 <= len(v) <= 5 for v in run.values())
    assert all(d in ids for v in run.values() for d, _ in v)
    assert all(a[1] >= b[1] for v in run.values() for a, b in zip(v, v[1:]))
    again = DGIRetriever(TINY).fit(ids, docs, queries, owner).search_embeddings(["q0", "q1"], queries[:2], k=5)
    assert again == run                                                      # deterministic per seed


def test_fixed_codes_train_the_same_decoder_and_bad_input_fails_early():
    docs, queries, owner = clustered(12)
    ids = [f"d{i}" for i in range(12)]
    fixed = {d: (i % 3, i // 3) for i, d in enumerate(ids)}
    r = DGIRetriever(replace(TINY, index="fixed", gumbel=False, share_weights=False, logits="inner")).fit(
        ids, docs, queries, owner, fixed_codes=fixed)
    assert r.codes == fixed and len(r.search_embeddings(["q"], queries[:1], k=3)["q"]) == 3
    with pytest.raises(DsilabError, match="fixed_codes"):
        DGIRetriever(TINY).fit(ids, docs, queries, owner, fixed_codes=fixed)
    with pytest.raises(DsilabError, match="train_doc"):
        DGIRetriever(TINY).fit(ids, docs, queries, owner[:-1])
    with pytest.raises(DsilabError, match="logits"):
        DGIConfig(logits="dot")


def test_zipf_counts_and_the_popularity_report():
    rank, counts = zipf_counts(100, s=1.0, n_max=10, seed=0)
    assert sorted(rank) == list(range(100)) and counts[rank == 0][0] == 10 and counts[rank == 99][0] == 0
    assert np.all(np.diff(counts[np.argsort(rank)]) <= 0)
    ids = ["a", "b", "c", "d", "e"]
    setting = LongTailSetting("toy", None, ids, np.zeros((5, 2)), np.zeros((0, 2)), np.zeros(0, int),
                              np.array([9, 3, 1, 0, 0]), np.arange(5), ["q1", "q2"], np.zeros((2, 2)),
                              {"q1": {"a": 1}, "q2": {"e": 1}}, {"fractions": (0.2, 0.4)})
    run = {"q1": [("a", 0.0)], "q2": [("a", 0.0), ("e", -1.0)]}
    out = report(run, setting)
    assert out["head Hits@1"] == 1.0 and out["tail Hits@1"] == 0.0 and out["tail Hits@10"] == 1.0
    assert out["pop bias"] == pytest.approx(9.0 / 4.5)


# -- DGI on the DSI backbone: residual codes, the model hooks, the natural long tail -----------------------------------
from dsilab.dgi.codes import residual_codes  # noqa: E402
from dsilab.dgi.natural import (bias_band, bucket_table, buckets, popularity, popularity_bias,  # noqa: E402
                                zipf_collection)


def blobs(n=300, dim=24, groups=6, seed=0):
    """Unit vectors in a few loose clusters (documents of a few topics)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    x = centres[np.arange(n) % groups] + 0.8 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_residual_codes_report_collisions_before_handling_and_end_without_them():
    x = blobs(300)
    ids = [f"d{i}" for i in range(300)]
    rq = residual_codes(ids, x, levels=2, codes=8, seed=0)
    assert rq.collision_rate_nearest > 0.3          # 64 cells for 300 documents: the nearest codes must collide
    assert rq.collision_rate == 0.0 and rq.levels == 3   # ... an extra level, assigned collision-aware, separates them
    assert all(u["used"] == 8 for u in rq.utilisation())
    rep = rq.report()
    assert rep["collision rate (nearest codes)"] == round(rq.collision_rate_nearest, 4) and rep["dead codes re-seeded"] >= 0
    # the codes reconstruct the documents better level by level
    errs = [float(((rq.embeddings - sum(cb[rq.codes[:, l]] for l, cb in enumerate(rq.codebooks[:m]))) ** 2).sum(1).mean())
            for m in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]
    tree = rq.tree()
    assert tree.kind == "residual" and not tree.params["counter"] and len(tree) == 300
    assert all(8 * l <= c[l] < 8 * (l + 1) for c in tree.codes.values() for l in range(3))   # one token per (level, code)
    again = residual_codes(ids, x, levels=2, codes=8, seed=0)
    assert np.array_equal(again.codes, rq.codes)                                            # deterministic per seed
    plain = residual_codes(ids, x, levels=2, codes=8, seed=0, collision_aware=False)
    assert plain.collision_rate == pytest.approx(rq.collision_rate_nearest) and plain.levels == 2
    assert plain.tree().params["counter"]          # collisions left: the tree says so and counts within groups
    with pytest.raises(DsilabError, match="fewer than codes"):
        residual_codes(ids[:4], x[:4], codes=8)
    with pytest.raises(DsilabError, match="embeddings"):
        residual_codes(ids, x[:10])


def test_dead_codes_are_reseeded():
    x = np.repeat(blobs(20, groups=20), 10, axis=0)     # 20 distinct points, 200 documents: k-means leaves codes empty
    x[:, 0] += np.linspace(0, 1e-3, 200).astype(np.float32)
    rq = residual_codes([f"d{i}" for i in range(200)], x, levels=1, codes=24, seed=0, max_levels=1)
    assert rq.utilisation()[0]["used"] >= 20


def test_collision_floor_on_the_lab_collection_and_at_scifact_size():
    """The floor: collision rate of the full learned codes (before any disambiguation) <= 5%.

    Lab: MiniLM embeddings (cached on disk). 5,000 documents: TF-IDF + SVD embeddings of the synthetic collection
    (MiniLM would take minutes on a CPU here; the quantiser is what is under test).
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from dsilab.data import load_collection
    from dsilab.dgi.codes import collection_codes

    lab = load_collection("lab")
    rq = collection_codes(lab, levels=3, codes=16, seed=0)
    assert rq.collision_rate <= 0.05 and rq.levels <= 4, rq.report()
    big = load_collection("synthetic", n_docs=5000, seed=0)
    emb = TruncatedSVD(64, random_state=0).fit_transform(TfidfVectorizer().fit_transform(big.contents))
    rq = residual_codes(big.doc_ids, emb, levels=3, codes=32, seed=0)
    assert rq.collision_rate <= 0.05, rq.report()
    assert sum(u["used"] for u in rq.utilisation()) >= 0.9 * 32 * rq.levels


def test_natural_long_tail_buckets_and_a_neutral_popularity_bias():
    from dsilab.data import synthetic_collection

    coll = synthetic_collection(n_docs=60, queries_per_doc=4, seed=0)
    z = zipf_collection(coll, s=1.0, n_max=4, seed=0)
    pop = popularity(z)
    assert sorted(pop.values(), reverse=True)[:4] == [4, 2, 1, 1] and sum(pop.values()) == len(z.qrels["train"])
    assert z.qrels["test"] == coll.qrels["test"]                       # only the training split is skewed
    b = buckets(pop, 5, seed=0)
    assert [sum(v == f"B{i}" for v in b.values()) for i in range(5)] == [12] * 5
    assert all(pop[d] >= pop[e] for d in b for e in b if b[d] < b[e])  # B0 is the head
    # a retriever that ranks by popularity alone is biased; one that ignores it is inside its neutral band
    ids = sorted(pop)
    qrels = {f"q{d}": {d: 1} for d in ids}
    by_pop = sorted(ids, key=lambda d: -pop[d])
    popular = {q: [(d, 1.0) for d in by_pop[:10]] for q in qrels}
    rng = np.random.default_rng(1)
    blind = {q: [(d, 1.0) for d in rng.choice(ids, 10, replace=False)] for q in qrels}
    assert popularity_bias(popular, qrels, pop) > 0.6
    band = bias_band(blind, qrels, pop, n_perm=200)
    assert band["lo"] <= band["bias"] <= band["hi"] and band["p"] > 0.05
    assert bias_band(popular, qrels, pop, n_perm=200)["p"] < 0.01
    table = bucket_table({"blind": blind}, qrels, pop, n_docs=60, n_perm=20)
    assert list(table["bucket"]) == ["all", "B0", "B1", "B2", "B3", "B4"] and {"95% CI", "chance", "neutral band"} <= set(table)


def test_popularity_blind_baselines_score_neutral_on_the_lab_long_tail():
    """BM25 never sees popularity: over Zipf draws its bias averages near 0 and no draw is beyond the 1% level of its
    neutral band (a 5% band is left by about one draw in twenty; lab's draw 0 is at p = 0.03)."""
    from dsilab.baselines import BM25
    from dsilab.data import load_collection

    lab = load_collection("lab")
    biases = []
    for seed in range(4):
        z = zipf_collection(lab, seed=seed)
        queries, qrels = z.split("test")
        band = bias_band(BM25(z).search(queries, k=10), qrels, popularity(z), n_perm=300)
        assert band["p"] > 0.01, (seed, band)
        biases.append(band["bias"])
    assert abs(np.mean(biases)) < 0.05, biases


@pytest.fixture(scope="module")
def tiny_dgi():
    """A 40-document collection, its residual tree and an untrained minilm-seq2seq DSIModel with DGI installed."""
    from dsilab.data import synthetic_collection
    from dsilab.dgi.codes import collection_codes
    from dsilab.models import build_model
    from dsilab.tasks import TaskConfig, build_examples

    coll = synthetic_collection(n_docs=40, queries_per_doc=2, seed=0)
    rq = collection_codes(coll, levels=2, codes=4, seed=0)
    tree = rq.tree()
    examples = build_examples(coll, tree, TaskConfig(doc_len=14))
    model = build_model("minilm-seq2seq", tree, examples, adapter="dgi", decoder_layers=1)
    return coll, rq, tree, examples, model


def test_dgi_adapter_shares_the_codebook_rows_and_uses_cosine_logits(tiny_dgi):
    _, rq, tree, _, model = tiny_dgi
    net = model.net
    rows = net.get_decoder().get_input_embeddings().weight
    assert net.get_output_embeddings().weight is rows                      # one tensor: inputs = outputs = codebook
    scale = float(rows[: model.base_vocab].detach().norm(dim=-1).mean())
    t = model.docid_token_ids[tree.token(rq.digit(1, int(rq.codes[0, 1])))]
    assert torch.allclose(rows[t], torch.from_numpy(rq.codebooks[1][rq.codes[0, 1]]) * scale, atol=1e-4)
    assert float(model.cosine_scale) == 30.0 and model.cosine_scale.requires_grad
    batch = model.batch(model_examples := [e for e in tiny_dgi[3] if e.task == "index"][:4])
    hidden = model.encode(batch["input_ids"], batch["attention_mask"])
    dec = model.shift_right(batch["labels"])
    inputs = model.net.get_decoder().get_input_embeddings()(dec).detach()   # fixed inputs: the row is also an input
    model.eval()
    logits = model.docid_logits(hidden, batch["attention_mask"], dec, inputs)
    assert logits.abs().max() <= 30.0 + 1e-3                               # |scale * cos| <= scale
    with torch.no_grad():
        rows[t] *= 5.0                                                     # a row's norm does not change its logit
    again = model.docid_logits(hidden, batch["attention_mask"], dec, inputs)
    with torch.no_grad():
        rows[t] /= 5.0
    assert torch.allclose(logits, again, atol=1e-4) and len(model_examples) == 4


def test_soft_teacher_forcing_mixes_codebook_rows_and_gradients_reach_them(tiny_dgi):
    _, rq, tree, examples, model = tiny_dgi
    soft = model.soft_inputs
    batch = model.batch([e for e in examples if e.task == "index"][:8])
    dec = model.shift_right(batch["labels"])
    model.train()
    soft.step.zero_()
    embeds, extra = soft(model, batch["labels"], dec)
    assert soft.tau == pytest.approx(1.0) and int(soft.step) == 1
    hard = model.net.get_decoder().get_input_embeddings()(dec)
    assert torch.equal(embeds[:, 0], hard[:, 0]) and not torch.allclose(embeds[:, 1], hard[:, 1])  # start hard, codes soft
    # embeds equal to the looked-up rows give the hard path's logits exactly (the inputs_embeds hook is faithful)
    hidden = model.encode(batch["input_ids"], batch["attention_mask"])
    model.eval()
    assert torch.allclose(model.docid_logits(hidden, batch["attention_mask"], dec),
                          model.docid_logits(hidden, batch["attention_mask"], dec, hard), atol=1e-5)
    model.train()
    model.zero_grad()
    loss = model(None, batch["attention_mask"], batch["labels"], encoder_hidden=hidden.detach(),
                 text_rows=torch.zeros(8, dtype=torch.bool))
    loss.backward()
    rows = model.net.get_decoder().get_input_embeddings().weight
    level0 = [model.docid_token_ids[tree.token(rq.digit(0, c))] for c in range(4)]
    assert all(rows.grad[t].abs().sum() > 0 for t in level0)                # every level-0 code row gets gradient
    assert model.cosine_scale.grad is not None and extra > 0
    soft.step.fill_(10_000)
    soft(model, batch["labels"], dec)
    assert soft.tau == pytest.approx(0.1)                                   # annealed to its end value


def test_dgi_ablations_untie_rows_and_switch_heads(tiny_dgi):
    from dsilab.models import build_model

    _, rq, tree, examples, _ = tiny_dgi
    untied = build_model("minilm-seq2seq", tree, examples, adapter="dgi", decoder_layers=1,
                         adapter_kwargs={"share_weights": False, "cosine": False, "gumbel": False})
    net = untied.net
    assert net.get_output_embeddings().weight is not net.get_decoder().get_input_embeddings().weight
    assert untied.cosine_scale is None and untied.soft_inputs is None
    from dsilab.docids import make_docids
    from dsilab.models import build_model as bm
    sem = make_docids(tiny_dgi[0], "semantic", k=4, c=4)
    with pytest.raises(DsilabError, match="residual docids"):
        bm("minilm-seq2seq", sem, examples, adapter="dgi", decoder_layers=1)


def test_train_dgi_goes_through_the_one_recipe_and_searches_with_decode():
    from dsilab.data import synthetic_collection
    from dsilab.dgi.seq2seq import DGIOptions, DGIResult, train_dgi
    from dsilab.recipes import Recipe

    coll = synthetic_collection(n_docs=40, queries_per_doc=2, seed=0)
    r = train_dgi(coll, Recipe(doc_len=14, max_epochs=2, eval_every=4, memo_sample=10, dev_queries=10, decoder_layers=1),
                  DGIOptions(levels=2, codes=4, anneal_steps=4))
    assert isinstance(r, DGIResult) and r.summary()["label"] == "DGI" and r.tree.kind == "residual"
    assert r.train.steps == 4 and int(r.model.soft_inputs.step) == 4        # one annealing tick per training step
    assert r.model.soft_inputs.tau == pytest.approx(0.1 ** 0.75)            # tau of the 4th step: 1.0 -> 0.1 over 4
    run = r.search(dict(list(coll.queries.items())[:3]), k=3)
    assert len(run) == 3 and all(len(v) == 3 and all(d in coll.docs for d, _ in v) for v in run.values())
    with pytest.raises(DsilabError, match="adapter"):
        train_dgi(coll, Recipe(adapter="lora"))
