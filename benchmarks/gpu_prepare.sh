#!/usr/bin/env bash
# Prepares, on this machine, what benchmarks/gpu_suite.sh carries to a GPU machine (which reaches no
# package index and no repository):
#
#   bash benchmarks/gpu_prepare.sh [ANCHOR_CHECKOUT]     # from the repository root
#
#   runs/wheels/        gymnasium, pyyaml, tqdm, pytest and their dependencies as wheels for the GPU
#                       machine's Python (PYVER, default 3.12: the H200 of 2026-11-26 ran 3.12)
#   runs/baseline_src/  the tree before issue 13's work (BASELINE, default a9bff7f), for --against
#   runs/anchor_src/    the model code of a NM512/dreamerv3-torch checkout, if one is given (for
#                       example the `fetch` tool's mirror checked out to a folder outside the repository)
#
# Then, with the device tool: run(command="bash benchmarks/gpu_suite.sh", timeout_s=540,
# carry=["runs/wheels", "runs/baseline_src", "runs/anchor_src"]). All three are ignored paths (runs/),
# about 25 MB together; the carry limit is 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
BASELINE=${BASELINE:-a9bff7f}
PIP=${PIP:-.venv/bin/pip}

rm -rf runs/wheels runs/baseline_src
mkdir -p runs/wheels runs/baseline_src
"$PIP" download -q -d runs/wheels --python-version "$PYVER" --platform manylinux2014_x86_64 --only-binary=:all: \
    gymnasium pyyaml tqdm pytest
echo "runs/wheels: $(ls runs/wheels | wc -l) wheels for Python $PYVER"

git archive "$BASELINE" | tar -x -C runs/baseline_src
echo "runs/baseline_src: $BASELINE"

if [ $# -ge 1 ]; then
    anchor=$1
    [ -f "$anchor/models.py" ] || { echo "$anchor has no models.py: give a dreamerv3-torch checkout" >&2; exit 2; }
    rm -rf runs/anchor_src
    mkdir -p runs/anchor_src
    cp "$anchor"/*.py "$anchor"/configs.yaml runs/anchor_src/
    echo "runs/anchor_src: from $anchor"
fi
du -sh runs/wheels runs/baseline_src ${1:+runs/anchor_src}
