"""Incremental indexing: the old/new split, docids for new documents, growing a model, replay, the update strategies."""
import numpy as np
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.decode import search
from dsilab.docids import DocidTree, make_docids
from dsilab.incremental import UpdateConfig, add_documents, extend_docids, replay_sample, split_collection
from dsilab.experiments.incremental import check_floors, measure
from dsilab.metrics import evaluate
from dsilab.models import build_model
from dsilab.recipes import Recipe, train_dsi
from dsilab.tasks import Example
from dsilab.train import TrainConfig, train

from conftest import TINY_T5


@pytest.fixture(scope="module")
def coll():
    return synthetic_collection(n_docs=30, n_topics=3, n_subtopics=2, doc_len=12, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=20, seed=0)


def test_split_is_seeded_and_keeps_only_old_judgements(coll):
    split = split_collection(coll, new_share=0.2, seed=0)
    assert len(split.new_ids) == 6 and len(split.old_ids) == 24
    assert set(split.new_ids).isdisjoint(split.old_ids) and set(split.new_ids) | set(split.old_ids) == set(coll.docs)
    for judged in split.old.qrels.values():  # the old index never hears of a new document
        assert all(set(rels) <= set(split.old_ids) for rels in judged.values())
    groups = split.groups("test")
    assert sorted(q for g in groups.values() for q in g) == sorted(coll.qrels["test"])
    assert all(set(coll.qrels["test"][q]) <= set(split.new_ids) for q in groups["new"]) and groups["new"]
    assert split_collection(coll, 0.2, seed=0).new_ids == split.new_ids
    assert split_collection(coll, 0.2, seed=1).new_ids != split.new_ids
    with pytest.raises(DsilabError, match="new_share"):
        split_collection(coll, new_share=1.0)
    with pytest.raises(DsilabError, match="at least one document"):
        split_collection(coll, new_share=0.01)


def test_new_documents_can_arrive_without_their_training_queries(coll):
    split = split_collection(coll, 0.2, seed=0, new_queries=False)
    new = set(split.new_ids)
    assert split.new_ids == split_collection(coll, 0.2, seed=0).new_ids
    assert all(set(rels).isdisjoint(new) for rels in split.full.qrels["train"].values())  # no model trains on them
    assert any(set(rels) & new for rels in coll.qrels["train"].values())
    assert split.full.qrels["test"] == split_collection(coll, 0.2, seed=0).full.qrels["test"]  # read on the same queries
    assert split.groups("test")["new"]


def test_atomic_and_naive_docids_extend_without_touching_old_ones(coll):
    split = split_collection(coll, 0.2, seed=0)
    for kind in ("atomic", "naive"):
        tree = make_docids(split.old, kind)
        grown, stats = extend_docids(tree, split.full, split.new_ids)
        assert all(grown.codes[d] == c for d, c in tree.codes.items())  # old docids unchanged
        assert set(grown.codes) == set(coll.docs) and len(set(grown.codes.values())) == len(coll.docs)  # unique
        assert all(grown.doc(grown.codes[d]) == d for d in split.new_ids)
        assert stats["new docs"] == 6
    assert stats["new tokens"] == []  # naive: 24..29 reuse the digit tokens
    atomic, stats = extend_docids(make_docids(split.old, "atomic"), split.full, split.new_ids)
    assert stats["new tokens"] == [f"<a{i}>" for i in range(24, 30)]


def test_semantic_docids_join_the_nearest_leaf_with_the_next_free_digit(coll):
    split = split_collection(coll, 0.2, seed=0)
    rng = np.random.default_rng(0)
    old_emb = rng.normal(size=(len(split.old_ids), 8)).astype(np.float32)
    old_emb /= np.linalg.norm(old_emb, axis=1, keepdims=True)
    tree = make_docids(split.old, "semantic", k=3, c=4, embeddings=old_emb)
    by_text = {split.full.docs[d].contents: v for d, v in zip(split.old_ids, old_emb)}
    target = max(tree.codes.values())[:-1]  # one leaf: every new document is placed right on its centroid
    centroid = np.mean([by_text[split.full.docs[d].contents] for d in tree.docs_under(target)], axis=0)

    def embed(texts):
        return np.array([by_text.get(t, centroid / np.linalg.norm(centroid)) for t in texts])

    grown, stats = extend_docids(tree, split.full, split.new_ids, embed=embed)
    size = len(tree.docs_under(target))
    last = max(tree.codes[d][-1] for d in tree.docs_under(target))
    assert [grown.codes[d] for d in split.new_ids] == [target + (last + 1 + i,) for i in range(6)]
    assert all(grown.codes[d] == c for d, c in tree.codes.items())
    assert stats["leaves that took new docs"] == 1 and stats["largest leaf (before/after)"].endswith(f"/{size + 6}")
    assert stats["leaves over c (before/after)"].split("/")[1] == str(int(size + 6 > 4) + int(stats["leaves over c (before/after)"].split("/")[0]))


def test_bad_new_documents_are_refused(coll):
    split = split_collection(coll, 0.2, seed=0)
    tree = make_docids(split.old, "atomic")
    with pytest.raises(DsilabError, match="no new documents"):
        extend_docids(tree, split.full, [])
    with pytest.raises(DsilabError, match="already indexed"):
        extend_docids(tree, split.full, [split.old_ids[0]])
    with pytest.raises(DsilabError, match="not in collection"):
        extend_docids(tree, split.full, ["nope"])
    with pytest.raises(DsilabError, match="duplicates"):
        extend_docids(tree, split.full, [split.new_ids[0]] * 2)
    with pytest.raises(DsilabError, match="replay"):
        UpdateConfig(replay=-1)


def test_an_update_can_be_capped_in_steps():
    initial = Recipe(max_epochs=50, max_steps=3000)
    capped = UpdateConfig(max_epochs=60, max_steps=400).recipe(initial, n_examples=1000)
    assert (capped.max_epochs, capped.max_steps) == (60, 400)
    assert UpdateConfig().recipe(initial, n_examples=1000).max_steps is None  # the initial model's cap is not inherited


def test_replay_sample_is_seeded():
    pool = [Example(f"text {i}", f"<a{i}>", "index", f"d{i}") for i in range(50)]
    a, b, c = replay_sample(pool, 20, seed=0), replay_sample(pool, 20, seed=0), replay_sample(pool, 20, seed=1)
    assert a == b and a != c and len(a) == 20 and len(set(a)) == 20
    more = replay_sample(pool, 120, seed=0)
    assert len(more) == 120 and all(more.count(e) in (2, 3) for e in pool)  # whole copies, then a sample
    assert replay_sample(pool, 0) == []


def test_replay_draws_old_examples_only_and_queries_on_request(coll):
    from types import SimpleNamespace

    from dsilab.incremental import update_examples

    split = split_collection(coll, 0.2, seed=0)
    tree, _ = extend_docids(make_docids(split.old, "atomic"), split.full, split.new_ids)
    initial = SimpleNamespace(recipe=Recipe(docids="atomic", doc_len=12))
    new = update_examples(initial, split, tree, "continue")
    assert {e.doc_id for e in new} == set(split.new_ids) and {e.task for e in new} == {"index", "retrieval"}
    for queries in (False, True):
        ex = update_examples(initial, split, tree, "replay", UpdateConfig(replay=2.0, replay_queries=queries))
        old = ex[len(new):]
        assert ex[: len(new)] == new and len(old) == 2 * len(new) and {e.doc_id for e in old} <= set(split.old_ids)
        assert {e.task for e in old} == ({"index", "retrieval"} if queries else {"index"})


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
def test_a_grown_model_still_decodes_its_old_docids(tiny_dsi):
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY_T5)
    train(model, ex, TrainConfig(max_steps=150, batch_size=8, lr=3e-3, warmup_steps=2, seed=0))
    docs = {e.doc_id: e.source for e in ex if e.task == "index"}
    before = evaluate(search(model, docs, k=1), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]
    vocab = len(model.tokenizer)
    grown_tree = DocidTree("atomic", {**tree.codes, "new0": (10,), "new1": (11,)})
    import copy

    grown = copy.deepcopy(model)
    assert grown.add_docids(grown_tree) == ["<a10>", "<a11>"]
    assert len(model.tokenizer) == vocab and model.docids is tree  # the original is untouched
    assert len(grown.tokenizer) == vocab + 2 and grown.docid_vocab.numel() == 13
    batch = model.batch(ex[:4])
    with torch.no_grad():  # the old docid rows score as before (to float rounding: a wider matrix product may take
        # another BLAS kernel on some CPUs); the new ones are extra columns
        hidden = model.encode(batch["input_ids"], batch["attention_mask"])
        dec = model.shift_right(batch["labels"])
        old = model.docid_logits(hidden, batch["attention_mask"], dec)
        new = grown.docid_logits(hidden, batch["attention_mask"], dec)
    assert torch.allclose(new[..., [*range(10), 12]], old, rtol=0, atol=1e-5)
    after = evaluate(search(grown, docs, k=1), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]
    assert before >= 0.9 and after >= before - 0.1, (before, after)
    assert grown.docid_sequences()["new1"][0] == grown.tokenizer.convert_tokens_to_ids("<a11>")
    with pytest.raises(DsilabError, match="changed their docid"):
        copy.deepcopy(model).add_docids(DocidTree("atomic", {**{d: (c[0] + 1,) for d, c in tree.codes.items()}}))


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
@pytest.mark.parametrize("kind", ["atomic", "semantic"])
def test_updates_add_the_new_documents_and_leave_the_initial_model_alone(coll, kind, tmp_path):
    split = split_collection(coll, 0.2, seed=0)
    recipe = Recipe(docids=kind, k=3, c=4, doc_len=12, lr=3e-3, max_epochs=3, eval_every=3, dev_queries=10,
                    memo_sample=10)
    initial = train_dsi(split.old, recipe)
    vocab, codes = len(initial.model.tokenizer), dict(initial.tree.codes)
    weights = {k: v.clone() for k, v in initial.model.state_dict().items()}
    cfg = UpdateConfig(replay=1.0, max_epochs=2, curve_every=1, curve_docs=4)
    cont = add_documents(initial, split, "continue", cfg)
    rep = add_documents(initial, split, "replay", cfg)
    assert len(initial.model.tokenizer) == vocab and initial.tree.codes == codes  # not mutated
    assert [k for k, v in weights.items() if not torch.equal(v, initial.model.state_dict()[k])] == []
    # the copies share the frozen encoder's weights (one encoder in memory, not three) and copy what trains
    frozen = {id(p) for p in initial.model.parameters() if not p.requires_grad}
    trained = {id(p) for p in initial.model.parameters() if p.requires_grad}
    for up in (cont, rep):
        mine = {id(p) for p in up.model.parameters()}
        assert frozen & mine and not trained & mine
    for up in (cont, rep):
        assert set(up.tree.codes) == set(coll.docs) and all(up.tree.codes[d] == c for d, c in codes.items())
        assert set(up.model.docid_sequences()) == set(coll.docs)
        assert up.curve[0]["step"] == 0 and [p["step"] for p in up.curve[1:]] == list(range(1, up.steps + 1))
        assert all(0 <= p["old memo"] <= 1 and 0 <= p["new memo"] <= 1 for p in up.curve)
        assert up.seconds > 0 and up.steps > 0
    assert rep.n_examples == 2 * cont.n_examples  # replay 1.0: as many old indexing examples as new examples
    row = measure(rep, split, "test", rep.model, recipe.doc_len)
    assert {"old memo", "new memo", "old Hits@10", "old Hits@10 CI", "new Hits@1", "new chance Hits@10"} <= set(row)
    assert 0 <= row["new Hits@10 CI"][0] <= row["new Hits@10"] <= row["new Hits@10 CI"][1] <= 1
    initial_row = measure(initial, split, "test", initial.model, recipe.doc_len)
    assert initial_row["new Hits@10"] == 0 and initial_row["new chance Hits@10"] == 0  # nothing new to find yet
    with pytest.raises(DsilabError, match="strategy"):
        add_documents(initial, split, "forget")
    # in place, from the initial model read back from disk: the same update, in that very network (one in memory)
    from dsilab import load_model

    parked = initial.save(tmp_path / "initial")
    initial.model = None
    with pytest.raises(DsilabError, match="load_model"):
        add_documents(initial, split, "continue", cfg, in_place=True)
    initial.model = load_model(parked).model
    loaded = initial.model
    again = add_documents(initial, split, "continue", cfg, in_place=True)
    assert again.model is loaded and again.steps == cont.steps
    theirs = cont.model.state_dict()
    assert [k for k, v in again.model.state_dict().items() if not torch.equal(v, theirs[k])] == []


def test_floors_are_computed_from_the_rows():
    rows = {"DSI initial (old docs only)": {"old memo": 1.0, "old Hits@10": 0.81}, "DSI + continue": {"old memo": 0.5},
            "DSI + replay": {"old memo": 0.95, "old Hits@10": 0.80, "new Hits@10": 0.5, "seconds": 20.0},
            "DSI + retrain": {"old Hits@10": 0.82, "seconds": 100.0}}
    assert [f["holds"] for f in check_floors(rows)] == [True] * 6
    rows["DSI + replay"].update({"old memo": 0.5, "old Hits@10": 0.7, "new Hits@10": 0.3, "seconds": 50.0})
    rows["DSI + continue"]["old memo"] = 0.99
    assert [f["holds"] for f in check_floors(rows)] == [False] * 6


@pytest.mark.slow  # trains: `make test` runs it, `make test-quick` does not
def test_an_update_keeps_the_lexical_plan_over_every_indexed_document(coll):
    split = split_collection(coll, 0.2, seed=0, new_queries=False)
    recipe = Recipe(docids="semantic", k=3, c=4, doc_len=12, lr=3e-3, max_epochs=2, eval_every=3, dev_queries=10,
                    memo_sample=10, plan="bm25", plan_weights=[1.0, 4.0])
    initial = train_dsi(split.old, recipe)
    assert initial.plan_weight in (0.0, 1.0, 4.0)
    initial.plan_weight = 4.0  # whatever dev chose, the update must carry the initial model's weight
    up = add_documents(initial, split, "continue", UpdateConfig(max_epochs=1, curve_every=0))
    assert up.plan_weight == 4.0 and set(up.planner.collection.docs) == set(coll.docs)
    queries = {q: split.full.queries[q] for q in split.groups("test")["new"]}
    run = up.search(queries, k=10)
    # the plan lifts a new document the model barely trained on: BM25's top document is within the ranked list
    from dsilab.baselines import BM25

    top = {q: ranked[0][0] for q, ranked in BM25(split.full).search(queries, k=1).items()}
    assert sum(top[q] in [d for d, _ in run[q]] for q in queries) >= len(queries) // 2
