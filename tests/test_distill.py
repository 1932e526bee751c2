"""The listwise prefix loss (dsilab.distill): its arithmetic, what it teaches a model, and a recipe that uses it."""
import math

import pytest
import torch

from dsilab.core import DsilabError
from dsilab.distill import DistillConfig, PrefixDistillation, prefix_distributions, prefix_listwise_loss


def _case():
    """Three docids, two sharing their first token; teacher probabilities 0.5, 0.3, 0.2 (scores at temperature 1)."""
    labels = torch.tensor([[[1, 2], [1, 3], [4, 5]]])
    p = torch.tensor([0.5, 0.3, 0.2])
    return labels, p.log()[None]


def test_the_loss_is_zero_where_the_model_ranks_every_prefix_as_the_teacher():
    labels, teacher = _case()
    # level 1: the shared prefix "1" holds 0.8 of the teacher's mass, "4" 0.2; level 2: each docid its own
    logp = torch.tensor([[[math.log(0.8), math.log(0.5 / 0.8)], [math.log(0.8), math.log(0.3 / 0.8)],
                          [math.log(0.2), 0.0]]])
    assert prefix_listwise_loss(logp, labels, teacher, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    flat = torch.zeros_like(logp)  # a model indifferent between the documents
    assert prefix_listwise_loss(flat, labels, teacher, 1.0).item() > 0.05


def test_a_prefix_every_document_shares_teaches_nothing_and_gradients_follow_the_teacher():
    labels = torch.tensor([[[7, 1], [7, 2], [7, 3]]])  # one first token for all: only level 2 ranks
    teacher = torch.tensor([[0.5, 0.3, 0.2]]).log()
    logp = torch.zeros(1, 3, 2, requires_grad=True)
    loss = prefix_listwise_loss(logp, labels, teacher, 1.0)
    loss.backward()
    assert logp.grad[0, 0, 1] < 0 < logp.grad[0, 2, 1]  # raise the teacher's first, lower its last
    assert prefix_listwise_loss(logp[..., :1], labels[..., :1], teacher, 1.0).item() == 0.0
    # the KL at level 2 (uniform model vs 0.5/0.3/0.2), averaged over the two levels
    kl = sum(p * math.log(p * 3) for p in (0.5, 0.3, 0.2))
    assert loss.item() == pytest.approx(kl / 2, rel=1e-5)


def test_a_model_trained_with_the_prefix_loss_ranks_as_its_teacher(tiny_dsi):
    """Queries nobody trained on, each given a teacher list: after training, the model ranks each list as the teacher
    ranked it (its top document first), which the cross-entropy on the indexing examples alone would not teach."""
    from dsilab.models import build_model
    from dsilab.train import TrainConfig, train

    coll, tree, examples = tiny_dsi
    docs = coll.doc_ids
    queries = [f"made up query number {i}" for i in range(4)]
    lists = [[(docs[(i + j) % len(docs)], 1.0 - 0.3 * j) for j in range(3)] for i in range(4)]
    model = build_model("t5-scratch", tree, examples, seed=0, vocab_size=120, d_model=32, layers=1, decoder_layers=1,
                        heads=2, d_ff=64)
    distill = PrefixDistillation(queries, lists, DistillConfig(distill_list=3, distill_temperature=0.1, distill_batch=4))
    result = train(model, examples, TrainConfig(max_steps=150, lr=3e-3, eval_every=50, batch_size=16),
                   dev=({"q": queries[0]}, {"q": {docs[0]: 1}}), callbacks=[distill], keep_best=False)
    losses = [h["distill loss"] for h in result.history if "distill loss" in h]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    model.eval()
    seqs = model.docid_sequences()
    with torch.no_grad():
        enc = model.tokenize_sources(queries)
        hidden = model.encode(enc["input_ids"], enc["attention_mask"])
        for i, ranked in enumerate(lists):
            labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(seqs[d]) for d, _ in ranked], batch_first=True,
                                                     padding_value=-100)
            scores = model.docid_token_logprobs(hidden[i : i + 1].expand(3, -1, -1),
                                                enc["attention_mask"][i : i + 1].expand(3, -1), labels).sum(-1)
            assert scores.argmax().item() == 0, (i, scores)


def test_prefix_distributions_are_what_the_loss_compares(tiny_dsi):
    """For one query and a teacher list: at each length both distributions sum to 1, the whole docids stand alone at
    the last length, and the mean over lengths of KL(teacher || model) is the loss returned."""
    from dsilab.models import build_model

    coll, tree, examples = tiny_dsi
    model = build_model("t5-scratch", tree, examples, seed=0, vocab_size=120, d_model=32, layers=1, decoder_layers=1,
                        heads=2, d_ff=64).eval()
    ranked = [(d, 1.0 - 0.2 * j) for j, d in enumerate(coll.doc_ids[:4])]
    rows, loss = prefix_distributions(model, "a question nobody asked", ranked, temperature=0.5)
    lengths = sorted({r["length"] for r in rows})
    kl = []
    for n in lengths:
        level = [r for r in rows if r["length"] == n]
        assert sum(r["teacher p"] for r in level) == pytest.approx(1.0) and sum(r["model q"] for r in level) == pytest.approx(1.0)
        kl.append(sum(r["teacher p"] * math.log(r["teacher p"] / r["model q"]) for r in level))
    last = [r for r in rows if r["length"] == lengths[-1]]
    assert sorted(d for r in last for d in r["documents"]) == sorted(d for d, _ in ranked) and all(len(r["documents"]) == 1 for r in last)
    assert loss == pytest.approx(sum(kl) / len(kl), rel=1e-4)


def test_distillation_settings_are_checked():
    with pytest.raises(DsilabError, match="at least 2"):
        DistillConfig(distill_list=1)
    with pytest.raises(DsilabError, match="temperature"):
        DistillConfig(distill_list=4, distill_temperature=0)
    from dsilab.recipes import Recipe

    with pytest.raises(DsilabError, match="pseudo_per_doc"):
        Recipe(distill_list=10)
    with pytest.raises(DsilabError, match="one teacher list per query"):
        PrefixDistillation(["a"], [], DistillConfig(distill_list=2))


def test_a_recipe_with_the_prefix_loss_trains_and_logs_it():
    # the span queries of every document, each with the fine-tuned dense teacher's top 3, through train_dsi
    from dsilab.data import synthetic_collection
    from dsilab.recipes import Recipe, train_dsi

    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=10, queries_per_doc=2, seed=2)
    recipe = Recipe(docids="semantic", doc_len=10, pseudo_per_doc=2, query_teacher_k=1, distill_list=3, max_epochs=2,
                    eval_every=5, backbone="t5-scratch")
    assert recipe.label == ("DSI semantic (+2 span queries/doc, dense-teacher top-1 labels, dense-teacher top-3 prefix "
                            "loss, t5-scratch)")
    result = train_dsi(coll, recipe)
    logged = [h["distill loss"] for h in result.history if "distill loss" in h]
    assert logged and all(x >= 0 and math.isfinite(x) for x in logged)
