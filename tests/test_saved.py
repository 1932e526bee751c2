"""A trained DSI model saved to a folder and reopened in a fresh process searches exactly as before."""
import json
import subprocess
import sys

import pytest

from dsilab import DsilabError, load_model
from dsilab.recipes import Recipe, train_dsi

from conftest import TINY_T5

pytestmark = pytest.mark.slow  # trains six small models (QLoRA on a CPU is slow)

VARIANTS = {
    "atomic": dict(docids="atomic"),
    "naive": dict(docids="naive"),
    "semantic": dict(docids="semantic", k=3, c=4),
    "lora": dict(docids="semantic", k=3, c=4, adapter="lora", adapter_kwargs={"r": 4}),
    "qlora": dict(docids="atomic", adapter="qlora", adapter_kwargs={"r": 4, "double_quant": True}),
    "residual, relevance-based": dict(docids="residual", docid_space="relevance", k=3),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each variant trained briefly on a 12-document collection, saved, with its run on the queries."""
    from dsilab.data import synthetic_collection

    coll = synthetic_collection(n_docs=12, n_topics=2, n_subtopics=1, doc_len=12, queries_per_doc=2, vocab_per_topic=20,
                                vocab_per_subtopic=10, n_common=20, seed=0)
    queries = dict(list(coll.queries.items())[:8])
    out = {}
    for name, changes in VARIANTS.items():
        result = train_dsi(coll, Recipe(backbone="t5-scratch", arch=TINY_T5, max_steps=6, eval_every=3, batch_size=8,
                                        **changes))
        folder = tmp_path_factory.mktemp(name)
        result.save(folder)
        out[name] = (folder, result.search(queries, k=5))
    return coll, queries, out


def test_a_reloaded_model_returns_the_identical_run_in_a_fresh_process(saved):
    coll, queries, out = saved
    code = ("import json, sys; from dsilab import load_model; folders, queries = json.loads(sys.stdin.read()); "
            "print(json.dumps({n: load_model(f).search(queries, k=5) for n, f in folders.items()}))")
    runs = json.loads(subprocess.run([sys.executable, "-c", code], input=json.dumps([{n: str(f) for n, (f, _) in out.items()}, queries]),
                                     capture_output=True, text=True, check=True).stdout)
    for name, (_, before) in out.items():
        after = runs[name]
        for q, ranked in before.items():
            assert [d for d, _ in ranked] == [d for d, _ in after[q]], f"{name}: another ranking for {q}"
            assert max(abs(s - t) for (_, s), (_, t) in zip(ranked, after[q])) <= 1e-6, f"{name}: scores moved"


def test_the_folder_holds_a_model_card_and_names_its_collection(saved):
    coll, _, out = saved
    folder = out["semantic"][0]
    card = (folder / "README.md").read_text()
    assert coll.fingerprint() in card and "memorisation" in card
    assert json.loads((folder / "recipe.json").read_text())["docids"] == "semantic"
    assert load_model(folder, collection=coll).recipe["docids"] == "semantic"


def test_a_model_of_another_collection_or_an_unfinished_folder_is_refused(saved, lab, tmp_path):
    _, _, out = saved
    with pytest.raises(DsilabError, match="another corpus"):
        load_model(out["atomic"][0], collection=lab)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"")
    with pytest.raises(DsilabError, match="not a complete model folder.*model.json"):
        load_model(tmp_path / "half")
    with pytest.raises(DsilabError, match="no model folder"):
        load_model(tmp_path / "nowhere")



def test_a_model_with_a_lexical_plan_searches_with_it_once_reopened(saved, tmp_path):
    # the plan reads the documents: reopened with its collection the model ranks as before, plan included; without
    # it, search refuses rather than drop the plan
    coll, queries, _ = saved
    result = train_dsi(coll, Recipe(backbone="t5-scratch", arch=TINY_T5, max_steps=6, eval_every=3, batch_size=8,
                                    docids="naive", plan="bm25", plan_weights=(8.0,)))
    result.plan_weight = 8.0  # whatever dev chose: the weight the folder must carry
    before = result.search(queries, k=5)
    assert before != result.search(queries, k=5, plan_weight=0)
    result.save(tmp_path / "plan")
    after = load_model(tmp_path / "plan", collection=coll).search(queries, k=5)
    for q, ranked in before.items():
        assert [d for d, _ in ranked] == [d for d, _ in after[q]]
        assert max(abs(s - t) for (_, s), (_, t) in zip(ranked, after[q])) <= 1e-5
    with pytest.raises(DsilabError, match="lexical plan.*collection"):
        load_model(tmp_path / "plan").search(queries, k=5)
