"""The one DSI recipe: string docids are memorised, training stops at convergence, dev is a fair sample."""

import pytest

from dsilab.core import DsilabError
from dsilab.data import Collection, synthetic_collection
from dsilab.recipes import Recipe, seen_unseen, train_dsi, with_dev


@pytest.fixture(scope="module")
def coll120():
    """120 short documents: naive docids 0-119 are up to 3 digits long; semantic k=10, c=10 gives 3 levels or more."""
    return synthetic_collection(n_docs=120, n_topics=4, n_subtopics=3, doc_len=14, queries_per_doc=1, seed=0)


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
@pytest.mark.parametrize("kind", ["naive", "semantic"])
def test_string_docids_are_memorised(coll120, kind):
    # The old default (lr 3e-3, full-vocabulary softmax) memorised 0.000 of SciFact with naive docids: the new
    # decoder diverged. The recipe's default must read every one of 120 documents back to its own docid.
    docs_only = Collection("docs", coll120.docs, {}, {})  # indexing only: nothing but memorisation to learn
    result = train_dsi(docs_only, Recipe(docids=kind, k=10, c=10, doc_len=14, memo_threshold=0.95, patience=0,
                                         eval_every=20, max_epochs=60))  # patience 0: stop once memorised
    assert max(result.tree.depths) >= 3
    assert result.memorisation >= 0.95, result.history
    assert result.steps_to_memorise is not None and result.train.stopped_early  # converged, not capped


def test_dev_is_held_out_of_train_when_missing():
    coll = synthetic_collection(n_docs=30, n_topics=3, n_subtopics=1, doc_len=8, queries_per_doc=2, seed=1)
    no_dev = Collection(coll.name, coll.docs, coll.queries, {s: coll.qrels[s] for s in ("train", "test")})
    held, source = with_dev(no_dev, holdout=0.2, seed=0)
    assert source == "train (held out)"
    assert not set(held.qrels["dev"]) & set(held.qrels["train"])  # held-out queries are never trained on
    assert set(held.qrels["dev"]) | set(held.qrels["train"]) == set(no_dev.qrels["train"])
    assert held.qrels["test"] == no_dev.qrels["test"]
    assert with_dev(no_dev, holdout=0.2, seed=0)[0].qrels["dev"] == held.qrels["dev"]  # seeded
    assert with_dev(held)[1] == "dev"  # a collection with its own dev keeps it
    assert with_dev(Collection("t", coll.docs, coll.queries, {"test": coll.qrels["test"]}))[1] == "none"
    groups = seen_unseen(held, "test")
    assert sorted(groups["seen"] + groups["unseen"]) == sorted(held.qrels["test"])


def test_bad_recipe():
    with pytest.raises(DsilabError, match="docids"):
        Recipe(docids="numeric")
    with pytest.raises(DsilabError, match="memo_threshold"):
        Recipe(memo_threshold=1.5)


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
def test_pruned_recipe_reaches_its_sparsity_before_it_may_stop():
    # pruning ramps over `prune_epochs`: a run that memorises early must not stop (or keep weights) before that
    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=8, queries_per_doc=1, seed=0)
    docs_only = Collection("docs", coll.docs, {}, {})
    result = train_dsi(docs_only, Recipe(docids="atomic", backbone="t5-scratch", doc_len=8, prune=0.5, prune_epochs=4,
                                         patience=0, eval_every=1, max_epochs=30, lr=3e-3))
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert result.train.steps >= 5  # 1 batch per epoch: pruning ends at step 5
    assert result.train.best["step"] >= 5 and "pruned 50%" in result.recipe.label
    with pytest.raises(DsilabError, match="prune"):
        Recipe(prune=1.0)


def test_generated_queries_join_training_filtered_and_counted():
    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=10, queries_per_doc=1, seed=2)
    recipe = Recipe(docids="atomic", doc_len=10, pseudo_per_doc=3, query_generator="span", query_filter_k=1,
                    max_epochs=2, eval_every=5, backbone="t5-scratch")
    assert recipe.label == "DSI atomic (+3 span queries/doc, BM25 top-1 filter, t5-scratch)"
    result = train_dsi(coll, recipe)
    report = result.query_filter
    assert report["queries"] == 60 and report["kept"] + report["dropped"] == 60
    assert result.examples_by_task["pseudo"] == report["kept"] and result.examples_by_task["index"] == 20
    assert result.summary()["query filter"] == report


def test_a_dense_teacher_labels_the_generated_queries_a_recipe_trains_on():
    # distillation: the span queries train towards the fine-tuned dense teacher's top document, the pipeline counts them
    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=10, queries_per_doc=2, seed=2)
    recipe = Recipe(docids="atomic", doc_len=10, pseudo_per_doc=2, query_teacher_k=1, max_epochs=2, eval_every=5,
                    backbone="t5-scratch")
    assert recipe.label == "DSI atomic (+2 span queries/doc, dense-teacher top-1 labels, t5-scratch)"
    result = train_dsi(coll, recipe)
    taught = result.query_filter["teacher"]
    assert taught["queries"] == 40 and result.examples_by_task["pseudo"] == 40  # k = 1: one label per query
    assert 0 <= taught["source is the teacher's top 1"] <= 1 and result.summary()["query filter"]["teacher"] == taught


def test_a_lexical_plan_weight_is_chosen_on_dev_and_reported():
    # plan="bm25": after training, every weight (and 0) is tried on dev Hits@10; the best (the smaller on a tie) is kept,
    # `search` uses it, and weight 0 searches without a plan
    from dsilab.metrics import evaluate

    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=10, queries_per_doc=2, seed=3)
    recipe = Recipe(docids="naive", doc_len=10, max_epochs=2, eval_every=5, backbone="t5-scratch", plan="bm25",
                    plan_weights=(1.0, 8.0))
    assert recipe.label == "DSI naive (t5-scratch, BM25 lexical plan)"
    result = train_dsi(coll, recipe)
    assert set(result.plan_dev) == {"0", "1", "8"}
    best = max(result.plan_dev.values())
    assert result.plan_dev[f"{result.plan_weight:g}"] == best
    assert all(float(w) >= result.plan_weight for w, h in result.plan_dev.items() if h == best)
    dev = result.collection.split("dev")
    assert evaluate(result.search(dev[0], 10), dev[1], ("Hits@10",))["Hits@10"] == pytest.approx(best, abs=1e-4)
    assert result.summary()["plan weight"] == result.plan_weight
    with pytest.raises(DsilabError, match="plan"):
        Recipe(plan="splade")
    with pytest.raises(DsilabError, match="plan_weights"):
        Recipe(plan="bm25", plan_weights=(0.0,))


def test_a_recipe_is_each_stage_config_and_each_name_means_one_thing():
    """The pipeline's stages take the recipe itself as their config (nothing copied), so each field name must belong to
    exactly one part; `seed` is the one name every part shares."""
    from collections import Counter
    from dataclasses import fields

    from dsilab.recipes import PARTS

    owners = Counter(f.name for part in PARTS for f in fields(part))
    assert {name for name, n in owners.items() if n > 1} == {"seed"}
    assert {f.name for f in fields(Recipe)} == set(owners)
    recipe = Recipe(docids="atomic", lr=3e-4, doc_len=12, decoder_layers=1, memo_threshold=0.9, prune=0.5)
    assert all(isinstance(recipe, part) for part in PARTS)
    # each stage's validation still runs on the whole recipe
    for bad, word in [(dict(amp="fp8"), "amp"), (dict(ratio=-1.0), "ratio"), (dict(dev_holdout=1.0), "dev_holdout")]:
        with pytest.raises(DsilabError, match=word):
            Recipe(**bad)


def test_convergence_is_restored_on_resume(tmp_path):
    """An interrupted `train_dsi` resumes with its stopping rule's state (best dev, evaluations without a gain, when it
    memorised), so the resumed run stops where an uninterrupted one does."""
    from conftest import TINY_T5, Interrupt

    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=8, queries_per_doc=2, seed=3)
    recipe = Recipe(docids="atomic", backbone="t5-scratch", doc_len=8, eval_every=2, max_epochs=40, lr=3e-3,
                    patience=2, arch=TINY_T5)
    straight = train_dsi(coll, recipe)
    with pytest.raises(KeyboardInterrupt):
        train_dsi(coll, recipe, checkpoint_dir=str(tmp_path / "ck"), callbacks=[Interrupt(straight.train.steps - 1)])
    resumed = train_dsi(coll, recipe, checkpoint_dir=str(tmp_path / "ck"))
    assert (resumed.train.steps, resumed.stopped, resumed.steps_to_memorise) == \
        (straight.train.steps, straight.stopped, straight.steps_to_memorise)
    assert resumed.train.best == straight.train.best
