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
