"""Why string docids did not learn: one SciFact run per setting, memorisation and held-out Hits@1 every 500 steps.

Run on the GPU machine (see run.sh): `python3 benchmarks/gpu_dsi/diagnose.py NAME` for one setting of SETTINGS,
or `... all` to start them all at once (one process each, one CPU thread each, sharing the GPU).
"old" = the full-vocabulary softmax the package used before the docid head (models.DSIModel.docid_logits).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

SETTINGS = {  # name: (docid kind, lr, decoder layers, docid_init, batch, full-vocabulary softmax)
    "semantic-old-3e-3": ("semantic", 3e-3, 2, "encoder", 64, True),
    "semantic-old-1e-3": ("semantic", 1e-3, 2, "encoder", 64, True),
    "semantic-3e-3": ("semantic", 3e-3, 2, "encoder", 64, False),
    "semantic-1e-3": ("semantic", 1e-3, 2, "encoder", 64, False),
    "semantic-3e-4": ("semantic", 3e-4, 2, "encoder", 64, False),
    "semantic-1e-3-random": ("semantic", 1e-3, 2, "random", 64, False),
    "semantic-1e-3-4layers": ("semantic", 1e-3, 4, "encoder", 64, False),
    "semantic-1e-3-b256": ("semantic", 1e-3, 2, "encoder", 256, False),
    "naive-old-1e-3": ("naive", 1e-3, 2, "encoder", 64, True),
    "naive-3e-3": ("naive", 3e-3, 2, "encoder", 64, False),
    "naive-1e-3": ("naive", 1e-3, 2, "encoder", 64, False),
    "naive-1e-3-random": ("naive", 1e-3, 2, "random", 64, False),
    "atomic-1e-3-random": ("atomic", 1e-3, 2, "random", 64, False),
}


def old_forward(self, input_ids, attention_mask, labels, encoder_hidden=None):
    hidden = self.encode(input_ids, attention_mask) if encoder_hidden is None else encoder_hidden
    logits = self.decode(hidden, attention_mask, self.shift_right(labels))
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


def run(name: str, steps: int = int(os.environ.get("STEPS", 3000))) -> dict:
    from dsilab.data import Collection, load_collection
    from dsilab.decode import search
    from dsilab.docids import make_docids
    from dsilab.metrics import evaluate
    from dsilab.models import DSIModel, build_model
    from dsilab.tasks import TaskConfig, build_examples
    from dsilab.train import Callback, TrainConfig, train

    kind, lr, layers, init, batch, old = SETTINGS[name]
    if old:
        DSIModel.forward = old_forward
        DSIModel.next_token_logprobs = lambda self, h, m, p: torch.log_softmax(self.decode(h, m, p)[:, -1].float(), -1)
    coll = load_collection(os.environ.get("COLL", ".gpu/data/scifact"))
    rng = np.random.default_rng(0)
    train_q = sorted(coll.qrels["train"])
    dev_q = set(rng.choice(train_q, size=len(train_q) // 5, replace=False))
    qrels = {"train": {q: r for q, r in coll.qrels["train"].items() if q not in dev_q},
             "dev": {q: r for q, r in coll.qrels["train"].items() if q in dev_q}}
    coll = Collection(coll.name, coll.docs, coll.queries, qrels)
    tree = make_docids(coll, kind, k=10, c=100, seed=0)
    examples = build_examples(coll, tree, TaskConfig(doc_len=64))
    model = build_model("minilm-seq2seq", tree, examples, docid_init=init, decoder_layers=layers).cuda()
    docs = {e.doc_id: e.source for e in examples if e.task == "index"}
    sample = sorted(rng.choice(sorted(docs), size=500, replace=False))
    dev = coll.split("dev")
    log = []
    t0 = time.time()

    class Probe(Callback):
        def on_step_end(self, tr):
            if tr.step % 500 == 0 or tr.step == steps:
                memo = evaluate(search(tr.net, {d: docs[d] for d in sample}, k=1, batch_size=128),
                                {d: {d: 1} for d in sample}, ("Hits@1",))["Hits@1"]
                hits = evaluate(search(tr.net, dev[0], k=10, batch_size=128), dev[1], ("Hits@1", "Hits@10"))
                log.append({"step": tr.step, "memo": round(memo, 3), **{k: round(v, 3) for k, v in hits.items()},
                            "s": round(time.time() - t0)})
                print(name, log[-1], flush=True)
                with open(f"/tmp/diagnose-{name}.json", "w") as f:  # after every probe: a cut-off run keeps its log
                    json.dump({"name": name, "kind": kind, "lr": lr, "decoder_layers": layers, "docid_init": init,
                               "batch": batch, "full_vocab_softmax": old, "log": log}, f)
                tr.net.train()

    train(model, examples, TrainConfig(max_steps=steps, lr=lr, batch_size=batch, warmup_steps=100, progress=False),
          callbacks=[Probe()])


if __name__ == "__main__":
    if sys.argv[1] == "all":
        procs = {n: subprocess.Popen([sys.executable, __file__, n], stderr=subprocess.DEVNULL,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"}) for n in SETTINGS}
        deadline = time.time() + float(os.environ.get("DEADLINE", 480))
        for p in procs.values():
            try:
                p.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
        out = {n: json.load(open(f"/tmp/diagnose-{n}.json")) for n in SETTINGS if os.path.exists(f"/tmp/diagnose-{n}.json")}
        json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "diagnose-scifact.json"), "w"), indent=1)
    else:
        torch.set_num_threads(1)
        run(sys.argv[1])
