"""DGI on the DSI backbone: residual codes, weight sharing, soft teacher forcing, cosine logits, the natural long tail,
and the comparison's bookkeeping (bucket summary, merge, goal)."""
import numpy as np
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.dgi import anneal, cosine_logits, inner_logits, zipf_counts


def test_cosine_logits_ignore_the_scale_of_a_code_vector_and_inner_products_do_not():
    torch.manual_seed(0)
    x, table = torch.randn(5, 16), torch.randn(6, 16)
    scaled = table.clone()
    scaled[2] *= 7.0
    assert torch.allclose(cosine_logits(x, table, 0.1), cosine_logits(x, scaled, 0.1), atol=1e-5)
    assert torch.allclose(inner_logits(x, scaled)[:, 2], 7.0 * inner_logits(x, table)[:, 2], atol=1e-4)


def test_zipf_counts_and_the_annealed_temperature():
    rank, counts = zipf_counts(100, s=1.0, n_max=10, seed=0)
    assert sorted(rank) == list(range(100)) and counts[rank == 0][0] == 10 and counts[rank == 99][0] == 0
    assert np.all(np.diff(counts[np.argsort(rank)]) <= 0)
    with pytest.raises(DsilabError, match="n_docs"):
        zipf_counts(0)
    assert anneal(0, 100, 1.0, 0.1) == 1.0 and anneal(100, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert anneal(50, 100, 1.0, 0.1) == pytest.approx(0.1 ** 0.5) and anneal(500, 100, 1.0, 0.1) == pytest.approx(0.1)


# -- DGI on the DSI backbone: residual codes, the model hooks, the natural long tail -----------------------------------
from dsilab.docids.residual import residual_codes  # noqa: E402
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
    from dsilab.docids.residual import collection_codes

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
    from dsilab.docids.residual import collection_codes
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


def test_a_saved_dgi_model_reloads_without_its_quantiser_and_searches_the_same(tmp_path):
    """DGI's quantiser and Gumbel inputs serve training only: the saved folder rebuilds its heads (cosine, tied rows)
    and returns the identical run in a fresh process."""
    import json
    import subprocess
    import sys

    from dsilab.data import synthetic_collection
    from dsilab.dgi.seq2seq import DGIOptions, train_dgi
    from dsilab.recipes import Recipe

    coll = synthetic_collection(n_docs=20, queries_per_doc=2, seed=0)
    r = train_dgi(coll, Recipe(doc_len=14, max_steps=2, eval_every=2, memo_sample=10, dev_queries=10, decoder_layers=1),
                  DGIOptions(levels=2, codes=4, anneal_steps=4))
    queries = dict(list(coll.queries.items())[:6])
    before = r.search(queries, k=3)
    r.save(tmp_path / "dgi")
    assert r.model.soft_inputs is not None  # saving leaves the trained model whole
    code = ("import json, sys; from dsilab import load_model; folder, queries = json.loads(sys.stdin.read()); "
            "m = load_model(folder); assert m.model.soft_inputs is None and m.model.dgi_options.cosine; "
            "print(json.dumps(m.search(queries, k=3)))")
    after = json.loads(subprocess.run([sys.executable, "-c", code], input=json.dumps([str(tmp_path / "dgi"), queries]),
                                      capture_output=True, text=True, check=True).stdout)
    for q, ranked in before.items():
        assert [d for d, _ in ranked] == [d for d, _ in after[q]]
        assert max(abs(s - t) for (_, s), (_, t) in zip(ranked, after[q])) <= 1e-6


# -- the comparison's bookkeeping (dsilab.experiments.dgi): no training, a made-up result ------------------------------------
def fake_result(seeds=(0, 1), memo=1.0):
    """Two variants on 10 queries (B0: q0-q4, B4: q5-q9): DGI hits every tail query, DSI-semantic none of them."""
    buckets_ = {f"q{i}": "B0" if i < 5 else "B4" for i in range(10)}
    rows = []
    for s in seeds:
        for v, tail in (("DSI-semantic", 0.0), ("DGI", 1.0)):
            hits = {q: (1.0 if b == "B0" else tail) for q, b in buckets_.items()}
            rows.append({"variant": v, "seed": s, "memo Hits@1": memo, "steps": 10, "stopped": "converged",
                         "per_query": {"Hits@10": hits, "Hits@1": hits, "MRR@10": hits},
                         "pop bias": {q: 0.1 for q in buckets_}})
    return {"collection": "toy", "query bucket": buckets_, "recipe": {}, "variants": ["DSI-semantic", "DGI"],
            "chance Hits@10": {"all": 0.1, "B0": 0.1, "B4": 0.1}, "rows": rows, "seeds": list(seeds)}


def test_bucket_summary_pairs_variants_per_bucket_and_leaves_out_unconverged_runs():
    from dsilab.experiments.dgi import bucket_summary, goal

    t = bucket_summary(fake_result()).set_index(["variant", "bucket"])
    assert t.loc[("DGI", "B4"), "Hits@10"] == 1.0 and t.loc[("DSI-semantic", "B4"), "Hits@10"] == 0.0
    assert t.loc[("DGI", "B4"), "Δ vs DSI-semantic"] == 1.0 and t.loc[("DGI", "B0"), "Δ vs DSI-semantic"] == 0.0
    assert t.loc[("DGI", "B4"), "Δ verdict"] == "higher" and t.loc[("DGI", "B0"), "Δ verdict"] == "too small to tell"
    assert t.loc[("DSI-semantic", "all"), "Hits@10"] == 0.5 and t.loc[("DGI", "B3+B4"), "queries"] == 5
    assert t.loc[("DGI", "B4"), "chance"] == 0.1 and t.loc[("DGI", "all"), "chance"] == 0.1 and t.loc[("DGI", "all"), "seeds used"] == "2/2"
    assert ("DGI", "B1") not in t.index  # a bucket without queries has no row
    g = goal(fake_result())
    assert g["met"] and g["tail Δ"] == 1.0 and g["head Δ"] == 0.0
    assert bucket_summary(fake_result(memo=0.5)).empty  # runs that did not memorise never enter a comparison


def test_merge_joins_seeds_and_refuses_other_queries_or_repeated_runs():
    from dsilab.experiments.dgi import bucket_summary, merge

    a, b = fake_result(seeds=(0,)), fake_result(seeds=(1,))
    m = merge([a, b])
    assert m["seeds"] == [0, 1] and len(m["rows"]) == 4
    assert isinstance(m["rows"][0]["per_query"]["Hits@10"], list)  # compact: one list per metric, in query order
    assert bucket_summary(m).equals(bucket_summary(fake_result()))
    with pytest.raises(DsilabError, match="twice"):
        merge([a, a])
    other = {**b, "recipe": {"lr": 3e-4}}
    with pytest.raises(DsilabError, match="only seeds may differ"):
        merge([a, other])


def test_committed_dgi_results_cover_every_variant_and_seed_and_converged():
    import json

    from dsilab.results import RESULTS_DIR
    from dsilab.experiments.dgi import VARIANTS

    for name in ("dgi-lab-zipf1.json", "dgi-scifact.json"):
        r = json.loads((RESULTS_DIR / name).read_text())
        done = {(row["variant"], row["seed"]) for row in r["rows"] if "error" not in row}
        assert done == {(v, s) for v in VARIANTS for s in (0, 1, 2)}, name
        assert all(row["memo Hits@1"] >= 0.9 and row["stopped"] == "converged" for row in r["rows"]), name
        assert all(len(row["per_query"]["Hits@10"]) == r["n_queries"] for row in r["rows"]), name


@pytest.mark.slow
def test_bench_dgi_trains_each_variant_in_its_own_process_and_keeps_per_query_scores():
    from dsilab import load_collection
    from dsilab.experiments.dgi import bench_dgi, results_rows

    lab = load_collection("lab").topics(1)
    r = bench_dgi(lab, seeds=(0,), variants=("DGI",),
                  recipe={"max_steps": 2, "eval_every": 2, "doc_len": 16, "memo_sample": 10, "dev_queries": 5})
    assert r["zipf"] == 1.0 and r["collection"].endswith("zipf1")        # the lab gets its Zipfian training queries
    assert [(row["variant"], row["seed"]) for row in r["rows"]] == [("DGI", 0)]
    assert all(len(row["per_query"]["Hits@10"]) == r["n_queries"] and row["stopped"] == "step cap" for row in r["rows"])
    assert set(r["baseline pop bias"]) == {"BM25", "Dense (MiniLM)"}
    assert r["rows"][0]["codes"]["collision rate (learned codes)"] == 0.0
    rows = results_rows(r)   # two steps memorise nothing: the variant is named as not converged, never compared
    assert set(rows) == {"DGI · not converged"}
    with pytest.raises(DsilabError, match="unknown variant"):
        bench_dgi(lab, variants=("DGI++",))
