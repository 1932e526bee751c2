"""The `dsilab` command: `course list|run`, `bench NAME`, `data describe NAME`, and the lab on your own data:
`train` (a collection -> a saved model), `search` (a model + queries -> a TREC run), `eval` (a run + qrels -> scores)."""
from __future__ import annotations

import argparse
import json
import sys

from .core import DsilabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsilab", description="Differentiable Search Indexing: course and lab.")
    sub = parser.add_subparsers(dest="command", required=True)

    course = sub.add_parser("course", help="list or execute the course notebooks")
    csub = course.add_subparsers(dest="action", required=True)
    csub.add_parser("list", help="the notebooks in reading order")
    run = csub.add_parser("run", help="execute notebooks with papermill and print time and memory")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--fast", dest="fast", action="store_true", default=True, help="FAST mode (default)")
    mode.add_argument("--full", dest="fast", action="store_false",
                      help="full-size runs on a GPU-size collection (default beir/scifact from the hub; see --collection)")
    run.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 00 01")
    run.add_argument("--out", default="build/notebooks", help="folder for executed notebooks")
    run.add_argument("--collection", help='COLLECTION for the notebooks that take one (default: lab with --fast, '
                     'beir/scifact with --full): a name, or a BEIR folder such as a local copy of SciFact')

    # `bench NAME` takes exactly the flags of that benchmark's function (parsed in `_bench`: `dsilab bench NAME --help`)
    sub.add_parser("bench", add_help=False, help="run a benchmark: print a table, write JSON to --out (docs too only "
                   "for make bench); dsilab bench --help lists them, dsilab bench NAME --help its options")

    # `train` takes every Recipe field as a flag (parsed by jsonargparse in `_train`, which also reads --recipe FILE)
    sub.add_parser("train", add_help=False, help="train a DSI model on a collection and save it (dsilab train --help)")

    search = sub.add_parser("search", help="search with a saved model; write a TREC run")
    search.add_argument("--model", required=True, help="a folder written by `dsilab train`")
    search.add_argument("--queries", required=True, help="queries.jsonl, a qid<TAB>text file, or one query in quotes")
    search.add_argument("--k", type=int, default=10, help="documents per query (default 10)")
    search.add_argument("--out", help="the TREC run file to write (default: print it)")
    search.add_argument("--collection", help="the collection the model indexed (checked by fingerprint); needed by a "
                                             "model trained with a lexical plan (plan=bm25)")

    evaluate = sub.add_parser("eval", help="score a TREC run against qrels (ir-measures), with 95%% intervals")
    evaluate.add_argument("--run", required=True, help="a TREC run file (qid Q0 docid rank score tag)")
    evaluate.add_argument("--qrels", required=True, help="qrels: BEIR's qrels/<split>.tsv or a TREC qrels file")
    evaluate.add_argument("--measures", nargs="+", default=["Hits@1", "Hits@10", "MRR@10", "nDCG@10"],
                          help="ir-measures names or the course's aliases (default: Hits@1 Hits@10 MRR@10 nDCG@10)")
    evaluate.add_argument("--model", help="the model folder the run came from: adds each Hits@k's chance level")

    data = sub.add_parser("data", help="inspect a collection")
    dsub = data.add_subparsers(dest="action", required=True)
    describe = dsub.add_parser("describe", help="counts of a collection")
    describe.add_argument("name", nargs="?", default="lab")

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        return _train(argv[1:])
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = parser.parse_args(argv)
    try:
        if args.command == "course":
            from .course import list_notebooks, run_course

            if args.action == "list":
                for nb in list_notebooks():
                    print(nb.name)
                return 0
            results = run_course(fast=args.fast, only=args.only, out_dir=args.out, collection=args.collection)
            return 0 if all(r.status == "ok" for r in results) else 1
        if args.command == "search":
            return _search(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "data":
            from .data import load_collection

            print(json.dumps(load_collection(args.name).describe(), indent=2))
            return 0
    except DsilabError as e:
        print(f"dsilab: error: {e}", file=sys.stderr)
        return 2
    return 1


def _bench(argv: list[str]) -> int:
    """`dsilab bench NAME [flags]`: each benchmark its own parser (`dsilab.experiments.flags`), built from the keyword
    parameters of its function, so that `--help` lists what it honours and any other flag is an argparse error."""
    from .experiments import BENCHMARKS, bench_parser, benchmark, run_benchmark

    if not argv or argv[0] not in BENCHMARKS:  # `dsilab bench`, `dsilab bench --help` or an unknown name
        from .experiments.flags import summary

        asks_help = argv[:1] in (["-h"], ["--help"])  # the one-line summaries import every study: only for --help
        listing = "\n".join(f"  {n:<12} {summary(benchmark(n))}" for n in BENCHMARKS) if asks_help else ""
        top = argparse.ArgumentParser(prog="dsilab bench", epilog="benchmarks:\n" + listing if listing else None,
                                      formatter_class=argparse.RawDescriptionHelpFormatter,
                                      description="Run one benchmark: print its table, write its JSON under --out. "
                                      "`dsilab bench NAME --help` lists NAME's options.")
        top.add_argument("name", choices=list(BENCHMARKS))
        top.parse_args(argv[:1])  # prints the help, or exits 2 naming the choices
        return 2
    args = vars(bench_parser(argv[0]).parse_args(argv[1:]))
    collection, out_dir, update_docs = args.pop("collection"), args.pop("out"), args.pop("update_docs")
    if args.pop("log_evals"):
        from .experiments.runner import log_evals

        log_evals()
    try:
        from .core import configure_threads

        configure_threads()  # once: every core, or DSILAB_THREADS (parallel variants divide them among themselves)
        run_benchmark(argv[0], collection=collection, out_dir=out_dir, update_docs=update_docs, **args)
        return 0
    except DsilabError as e:
        print(f"dsilab: error: {e}", file=sys.stderr)
        return 2


def _train(argv: list[str]) -> int:
    """`dsilab train`: every field of `dsilab.recipes.Recipe` is a flag and a key of --recipe FILE (jsonargparse reads
    typed dataclasses, dicts and tuples from flags and JSON alike, and rejects unknown keys and wrong types; argparse
    and transformers' HfArgumentParser take neither dict nor tuple fields). Rerun with the same --out to resume."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from .recipes import Recipe

    p = ArgumentParser(prog="dsilab train", description="Train a DSI model on a collection until it has memorised it "
                       "and dev Hits@1 stops improving; save it to --out. Killed and rerun with the same --out, it "
                       "resumes from its last checkpoint.")
    p.add_argument("--collection", required=True, help='"lab", a BEIR folder, "beir/NAME" or "irds:ID" (online)')
    p.add_argument("--out", required=True, help="the model folder to write (weights, tokenizer, docids, recipe, log, card)")
    p.add_argument("--recipe", action=ActionConfigFile, help="a JSON file of recipe fields (flags after it override it)")
    p.add_argument("--progress", type=bool, default=True, help="show the training progress bar")
    p.add_class_arguments(Recipe, nested_key=None, as_group=True)
    ns = p.parse_args(argv)
    try:
        from dataclasses import fields

        from .recipes import train_to_folder

        recipe = Recipe(**{f.name: ns[f.name] for f in fields(Recipe)})
        train_to_folder(ns.collection, recipe, ns.out, progress=ns.progress)
        return 0
    except DsilabError as e:
        print(f"dsilab: error: {e}", file=sys.stderr)
        return 2


def _search(args) -> int:
    from .saved import load_model
    from .trec import read_queries, write_run

    queries = read_queries(args.queries)
    coll = None
    if args.collection:
        from .data import load_collection

        coll = load_collection(args.collection)
    run = load_model(args.model, collection=coll).search(queries, k=args.k)
    if args.out:
        print(f"wrote {write_run(run, args.out)} ({len(run)} queries, top {args.k})")
    else:
        for qid, ranked in run.items():
            for rank, (doc_id, score) in enumerate(ranked, 1):
                print(f"{qid} Q0 {doc_id} {rank} {score:.6f} dsilab")
    return 0


def _eval(args) -> int:
    from .metrics import bootstrap_ci, chance, evaluate
    from .trec import read_qrels, read_run

    run, qrels = read_run(args.run), read_qrels(args.qrels)
    unjudged = set(run) - set(qrels)
    if len(unjudged) == len(run):
        raise DsilabError(f"no query of {args.run} is judged in {args.qrels} (run ids e.g. {sorted(run)[:3]}, qrels ids "
                          f"e.g. {sorted(qrels)[:3]}): were they written for the same queries?")
    n_docs = None
    if args.model:
        import json
        from pathlib import Path

        from .saved import check_folder

        spec = json.loads((check_folder(args.model) / "model.json").read_text())
        n_docs = spec["collection"]["docs"]
        known = set(json.loads((Path(args.model) / "docids.json").read_text())["codes"])
        unknown = sorted({d for rels in qrels.values() for d in rels} - known)
        if unknown:
            raise DsilabError(f"{args.qrels} judges {len(unknown)} document(s) the model never indexed (e.g. "
                              f"{unknown[:3]}): use the qrels of the collection the model was trained on.")
    scores = evaluate(run, qrels, args.measures)
    print(f"{len(qrels)} judged queries ({len(set(qrels) - set(run))} without a ranking score 0)")
    for m in args.measures:
        lo, hi = bootstrap_ci(run, qrels, m)
        extra = ""
        if n_docs and m.split("@")[0] in ("Hits", "Success"):
            extra = f"   chance {chance(qrels, n_docs, int(m.split('@')[1])):.4f}"
        print(f"{m:<10} {scores[m]:.4f}   95% interval [{lo:.4f}, {hi:.4f}]{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
