"""The `dsilab` command: `course list|run`, `bench NAME`, `data describe NAME`."""
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

    from .bench import BENCHMARKS

    bench = sub.add_parser("bench", help="run a benchmark: print a table, write JSON to --out (docs too only for make bench)")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--collection", default="lab", help='"lab", "synthetic", "msmarco-v1.1" or a BEIR folder')
    bench.add_argument("--split", default="test")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--out", default="build/bench")

    data = sub.add_parser("data", help="inspect a collection")
    dsub = data.add_subparsers(dest="action", required=True)
    describe = dsub.add_parser("describe", help="counts of a collection")
    describe.add_argument("name", nargs="?", default="lab")

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
        if args.command == "bench":
            from .bench import run_benchmark
            from .core import configure_threads

            configure_threads()  # once: every core, or DSILAB_THREADS (parallel variants divide them among themselves)

            run_benchmark(args.name, collection=args.collection, split=args.split, seed=args.seed, out_dir=args.out)
            return 0
        if args.command == "data":
            from .data import load_collection

            print(json.dumps(load_collection(args.name).describe(), indent=2))
            return 0
    except DsilabError as e:
        print(f"dsilab: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
