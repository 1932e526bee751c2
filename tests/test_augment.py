"""dsilab.augment: exact outputs on hand-written sentences, masked-LM refill locality, determinism, pipeline cache."""
import pytest

from dsilab import DsilabError
from dsilab.augment import (MLMConfig, Num2Text, Pipeline, PosMLM, StopwordRemover, before_after,
                            collection_stopwords, diff_html, stopword_list, train_mlm)
from dsilab.data import Collection, Doc


# -- Num2Text ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Jupiter is 318 times heavier.", "Jupiter is three hundred eighteen times heavier."),
    ("42", "forty-two"),
    ("It erupted in 1991.", "It erupted in nineteen ninety-one."),
    ("In 1805, 1900, 2000 and 2005.", "In eighteen oh five, nineteen hundred, two thousand and two thousand five."),
    ("3.5 km and 1013.25 hPa", "three point five km and one thousand thirteen point two five hPa"),
    ("It was -5 degrees, then −12.", "It was minus five degrees, then minus twelve."),
    ("280,000 kilometres", "two hundred eighty thousand kilometres"),
    ("the 21st and 18th-century", "the twenty-first and eighteenth-century"),
    ("the 1650s and the 50s", "the sixteen fifties and the fifties"),
    ("10-12 hours, 1914–1918", "ten to twelve hours, nineteen fourteen to nineteen eighteen"),
    ("96% of it", "ninety-six percent of it"),
    ("an 8-year-old", "an eight-year-old"),
    ("", ""),
    ("no numbers here", "no numbers here"),
    ("Ünïcödé 東京 42 café", "Ünïcödé 東京 forty-two café"),
    ("star G2V, EF5, H1N1, LGM-1 at 12:00, v1.2.3", "star G2V, EF5, H1N1, LGM-1 at 12:00, v1.2.3"),
])
def test_num2text_exact(text, expected):
    assert Num2Text()(text) == expected


def test_num2text_options_and_changes():
    assert Num2Text(identifiers="convert")("H1N1 and LGM-1") == "H one N one and LGM-one"
    assert Num2Text(years=False)("in 1991") == "in one thousand nine hundred ninety-one"
    assert Num2Text(andword="and")("150") == "one hundred and fifty"
    rec = Num2Text().augment("from 3 to 4.5")
    assert rec.changes == (("3", "three"), ("4.5", "four point five"))
    with pytest.raises(DsilabError, match="identifiers"):
        Num2Text(identifiers="spell")
    with pytest.raises(DsilabError, match="year_range"):
        Num2Text(year_range=(2000, 1000))


# -- stopwords -----------------------------------------------------------------------------------
def test_stopword_list_falls_back_to_spacy_or_uses_nltk():
    name, words = stopword_list("auto")
    assert name in {"nltk", "spacy"} and {"the", "and", "of"} <= words
    try:
        from nltk.corpus import stopwords
        stopwords.words("english")
        nltk_present = True
    except LookupError:
        nltk_present = False
    assert (name == "nltk") == nltk_present
    if not nltk_present:
        with pytest.raises(DsilabError, match="nltk.downloader"):
            stopword_list("nltk")
    with pytest.raises(DsilabError, match="source"):
        stopword_list("lucene")


@pytest.mark.parametrize("text, keep, drop", [
    ("The cat sat on the mat.", "cat sat mat.", "cat sat mat"),
    ("What is the Great Red Spot?", "Great Red Spot?", "Great Red Spot"),
    ("Saturn's rings (mostly ice) are thin; they're not solid!", "Saturn's rings (ice) thin; solid!", "Saturn's rings ice thin solid"),
    ("It is, as it were, over.", "", ""),
    ("", "", ""),
    ("Ünïcödé 東京 the café", "Ünïcödé 東京 café", "Ünïcödé 東京 café"),
])
def test_stopwords_exact_spacy_list(text, keep, drop):
    assert StopwordRemover(source="spacy")(text) == keep
    assert StopwordRemover(source="spacy", punctuation="drop")(text) == drop


def test_stopwords_extra_keep_and_records():
    sw = StopwordRemover(source="spacy", extra=("planet",), keep=("not",))
    rec = sw.augment("Mars is not a large planet")
    assert rec.text == "Mars not large"
    assert rec.changes == (("is", ""), ("a", ""), ("planet", ""))
    with pytest.raises(DsilabError, match="punctuation"):
        StopwordRemover(punctuation="strip")
    with pytest.raises(DsilabError, match="sequences of words"):
        StopwordRemover(extra="planet")


def test_collection_stopwords_by_document_frequency():
    texts = ["the sun is a star", "the moon orbits earth", "the star shines", "a comet"]
    assert collection_stopwords(texts, max_df=0.5) == ("the",)
    assert collection_stopwords(texts, max_df=0.25) == ("the", "a", "star")
    with pytest.raises(DsilabError, match="max_df"):
        collection_stopwords(texts, max_df=2)


# -- POS-MLM -------------------------------------------------------------------------------------
TEXTS = [
    "The river carries water from the mountains to the sea. Fish swim in the river.",
    "Volcanoes erupt when magma rises. Lava flows down the slope and cools into rock.",
    "Stars shine because they fuse hydrogen. The sun burns for billions of years.",
    "Bees collect nectar and make honey. They dance to tell others where flowers grow.",
]


@pytest.fixture(scope="module")
def tiny_mlm():
    cfg = MLMConfig(init="scratch", vocab_size=200, hidden=32, layers=1, heads=1, intermediate=64, max_len=32, steps=5,
                    batch_size=4, lr=1e-3)
    return train_mlm(TEXTS * 3, cfg, seed=0)


def test_train_mlm_is_a_bert_and_cached(tiny_mlm):
    from transformers import BertForMaskedLM

    assert isinstance(tiny_mlm.model, BertForMaskedLM)
    assert tiny_mlm.info["params"] > 0 and tiny_mlm.info["heldout_top1"] is not None
    cfg = MLMConfig(init="scratch", vocab_size=200, hidden=32, layers=1, heads=1, intermediate=64, max_len=32, steps=5,
                    batch_size=4, lr=1e-3)
    again = train_mlm(TEXTS * 3, cfg, seed=0)
    assert again.name == tiny_mlm.name and again.info == tiny_mlm.info


def test_the_scratch_wordpiece_vocabulary_is_the_same_on_every_run():
    """`tokenizers` numbers its "##" pieces in hash order and so could learn another vocabulary on each run."""
    from dsilab.augment.mlm import train_tokenizer

    vocabs = [train_tokenizer(TEXTS * 3, 200).get_vocab() for _ in range(4)]
    assert all(v == vocabs[0] for v in vocabs) and len(vocabs[0]) > len(TEXTS)


def test_candidates_read_the_vocabulary_at_the_masks_only(tiny_mlm):
    """The head runs on the [MASK] positions alone (not a batch x length x vocabulary tensor): the same fillers and
    probabilities as from every position's logits, two masks in one text, a text without one."""
    import torch

    texts = ["The river [MASK] water to the [MASK].", "Bees make honey.", "Stars [MASK] because they fuse hydrogen."]
    got = tiny_mlm.candidates(texts, top_n=5, batch_size=2)
    enc = tiny_mlm.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = tiny_mlm.model(**enc).logits
    allowed = torch.from_numpy(tiny_mlm._whole_word)[: logits.shape[-1]]
    assert [len(x) for x in got] == [2, 0, 1]
    for row, per_mask in enumerate(got):
        at = (enc["input_ids"][row] == tiny_mlm.tokenizer.mask_token_id).nonzero().flatten().tolist()
        for pos, fillers in zip(at, per_mask):
            p, idx = torch.softmax(logits[row, pos].masked_fill(~allowed, float("-inf")), -1).topk(5)
            assert [w for w, _ in fillers] == [tiny_mlm.id_to_token[int(i)] for i in idx]
            assert [q for _, q in fillers] == pytest.approx(p.tolist(), abs=1e-6)


def test_pos_mlm_changes_only_masked_positions(tiny_mlm):
    aug = PosMLM(tiny_mlm, fraction=1.0, max_masks=2)
    plans = aug.plan(TEXTS, seed=0)
    outs = aug.augment_batch(TEXTS, seed=0)
    for text, plan, out in zip(TEXTS, plans, outs):
        masked = [w for _, words in plan for w in words]
        assert masked, "fraction=1.0 must mask a verb in every sentence that has one"
        assert set(out.spans) <= set(masked)
        for start, end in masked:
            assert text[start:end].isalpha()
        # outside the masked spans the text is byte-identical: rebuilding from the spans gives the output
        expect, pos = "", 0
        for (start, end), (before, after) in zip(out.spans, out.changes):
            assert text[start:end] == before
            expect += text[pos:start] + after
            pos = end
        assert expect + text[pos:] == out.text
        assert all(before != after for before, after in out.changes)
        assert not any(stopword_list()[1] & {after.lower() for _, after in out.changes})  # no "the" in a verb slot


def test_pos_mlm_leaves_hyphenated_compounds_alone(tiny_mlm):
    text = "The best-known river carries water. A well-built dam holds it."
    for plan in PosMLM(tiny_mlm, fraction=1.0, max_masks=3).plan([text] * 1, seed=0):
        masked = {text[a:b] for _, words in plan for a, b in words}
        assert "known" not in masked and "built" not in masked


def test_pos_mlm_deterministic_per_seed_and_fraction(tiny_mlm):
    aug = PosMLM(tiny_mlm, fraction=0.5)
    a = [x.text for x in aug.augment_batch(TEXTS, seed=3)]
    b = [x.text for x in aug.augment_batch(TEXTS[::-1], seed=3)][::-1]  # batch order does not matter
    assert a == b
    plans = {s: aug.plan(TEXTS, seed=s) for s in range(6)}
    assert len({repr(p) for p in plans.values()}) > 1  # another seed, other choices
    assert PosMLM(tiny_mlm, fraction=0.0).augment_batch(TEXTS, seed=0)[0].changed is False
    assert PosMLM(tiny_mlm).augment("").text == ""
    with pytest.raises(DsilabError, match="POS tags"):
        PosMLM(tiny_mlm, roles=("VERBS",))
    with pytest.raises(DsilabError, match="fraction"):
        PosMLM(tiny_mlm, fraction=1.5)


def test_load_mlm_fails_fast_offline(monkeypatch):
    from dsilab.augment import load_mlm
    from dsilab.core import hub_available

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_available.cache_clear()
    with pytest.raises(DsilabError, match="train_mlm"):
        load_mlm("bert-base-uncased")
    hub_available.cache_clear()


# -- pipeline ------------------------------------------------------------------------------------
def _collection() -> Collection:
    docs = {f"d{i}": Doc(f"d{i}", f"Doc {i}", t) for i, t in enumerate(TEXTS)}
    queries = {"q1": "what did 3 bees make in 1991?", "q2": "why do the stars shine"}
    return Collection("tiny", docs, queries, {"test": {"q1": {"d3": 1}, "q2": {"d2": 1}}})


def test_pipeline_normalises_docs_and_queries_and_caches(tiny_mlm):
    col = _collection()
    pipe = Pipeline([PosMLM(tiny_mlm, fraction=1.0), Num2Text(), StopwordRemover(source="spacy")])
    first = pipe.apply(col, seed=0)
    assert not first.cached
    assert first.collection.queries["q1"] == "three bees nineteen ninety-one?"  # number words are content
    assert first.collection.docs["d0"].title == "Doc zero"
    assert set(first.variants) <= set(col.doc_ids) and first.n_variants >= 1
    for doc_id, variants in first.variants.items():  # variants went through the normalisers too
        assert all(" the " not in v for v in variants)
    again = pipe.apply(col, seed=0)
    assert again.cached and again.collection.docs == first.collection.docs and again.variants == first.variants
    assert Pipeline([]).apply(col).collection.docs == col.docs
    assert Pipeline([Num2Text()], targets={0: ("docs",)}).apply(col).collection.queries == col.queries
    with pytest.raises(DsilabError, match="not an Augmenter"):
        Pipeline([str.lower])
    with pytest.raises(DsilabError, match="unknown target"):
        Pipeline([Num2Text()], targets={0: ("titles",)})


def test_before_after_and_diff_html():
    rows = before_after(Num2Text(), ["in 1991", "no digits"])
    assert rows == [{"before": "in 1991", "after": "in nineteen ninety-one", "changes": "'1991'->'nineteen ninety-one'"}]
    html = diff_html("the river carries water", "the river brings water")
    assert "<del" in html and "carries" in html and "brings" in html
    with pytest.raises(DsilabError, match="list of strings"):
        Num2Text().augment_batch("one string")


def test_ablation_summary_and_effects():
    from dsilab.experiments.augment import ABLATION_RECIPE, effects, summarise

    runs = {"none": [{"seed": s, "Hits@1": h, "Hits@10": 0.9, "aug_s": 0.0, "train_s": 1.0, "examples": 10}
                     for s, h in enumerate((0.50, 0.52, 0.48))],
            "x": [{"seed": s, "Hits@1": h, "Hits@10": 0.9, "aug_s": 1.0, "train_s": 1.0, "examples": 12}
                  for s, h in enumerate((0.60, 0.62, 0.58))],
            "y": [{"seed": s, "Hits@1": h, "Hits@10": 0.9, "aug_s": 1.0, "train_s": 1.0, "examples": 12}
                  for s, h in enumerate((0.51, 0.49, 0.53))]}
    out = summarise(runs, ABLATION_RECIPE)
    assert out["results"]["x"]["Hits@1"] == 0.6 and out["results"]["x"]["Hits@1 sd"] == 0.02 and out["seeds"] == [0, 1, 2]
    verdicts = effects(out["results"])
    assert verdicts["x"]["verdict"] == "helps" and verdicts["y"]["verdict"] == "no clear effect"
    with pytest.raises(DsilabError, match="no 'none' row"):
        effects({"x": out["results"]["x"]})


def test_numbers_survive_stopword_removal_after_num2text():
    # spaCy's stopword list holds "three" and "hundred": "318 times" used to come out as "eighteen times"
    from dsilab.augment import Num2Text, Pipeline, StopwordRemover

    out = Pipeline([Num2Text(), StopwordRemover()]).run(["a mass about 318 times that of Earth"], seed=0)[0][0]
    assert "three hundred eighteen" in out and "mass" in out and "that" not in out.split()
    assert "three" not in StopwordRemover(keep_numbers=False).augment_batch(["three hundred planets"])[0].text.split()


def test_heldout_accuracy_in_chunks_equals_one_pass_over_every_position(tiny_mlm):
    """Held-out accuracy reads the vocabulary at masked positions only, 64 windows at a time (the logits of every
    position at once held 14.9 GB at SciFact size): the same masks and the same answer as one full pass."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    from dsilab.augment.mlm import _heldout_accuracy, _windows

    model, tok, cfg = tiny_mlm.model, tiny_mlm.tokenizer, MLMConfig(**tiny_mlm.info["config"])
    held = _windows(tok, TEXTS * 40, cfg.max_len)[:150]  # three chunks
    got = _heldout_accuracy(model, tok, held, cfg, seed=0)
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.mask_prob, seed=1, mask_replace_prob=1.0,
                                            random_replace_prob=0.0)([{"input_ids": w} for w in held])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    sel = batch["labels"] != -100
    top5, gold = logits[sel].topk(5, dim=-1).indices, batch["labels"][sel]
    assert len(held) == 150 and got["heldout_masks"] == int(sel.sum()) > 0
    assert got["heldout_top1"] == round(float((top5[:, 0] == gold).float().mean()), 4)
    assert got["heldout_top5"] == round(float((top5 == gold[:, None]).any(-1).float().mean()), 4)
