#!/usr/bin/env bash
# CI: what a new user does with a plain (non-editable) `pip install` of the repository, run from a folder outside
# the checkout: list the envs, train and evaluate the prior, score it, write a submission and validate it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}  # the CPU wheel, as in the Makefile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# the working tree's files (tracked and untracked, not ignored) copied out, so the build leaves the checkout clean
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && tar --null -T - -cf -) \
    | tar -C "$work/src" -xf -
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$TORCH"
"$work/venv/bin/pip" install --quiet "$work/src"
rm -rf "$work/src"

cd "$work"
export PATH="$work/venv/bin:$PATH"
set -x
morbench --version
python -m morbench --version
morbench list
morbench doctor --no-verify || true  # reports what the text task lacks in this venv (exit 1), fixes included
python -c "import gymnasium, morbench; gymnasium.make('morbench/QM9-v0')"
morbench train prior --env morbench/QM9-v0 --seed 0 --out runs/prior-qm9/seed0 --eval-samples 128 --quiet  # the fewest samples a submission accepts
morbench score runs/prior-qm9/seed0 --no-plots
morbench submit runs/prior-qm9/seed0 --name "ci-prior-check" --out-dir board/submissions
morbench leaderboard validate board/submissions/*/*.json.gz  # submit writes <env-stem>/<slug>.json.gz
set +x
echo "pip-install-check: ok"
