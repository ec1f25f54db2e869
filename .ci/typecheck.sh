#!/usr/bin/env bash
# The type check (`make typecheck`, part of `make lint` and of CI): mypy, configured in pyproject.toml, on the package
# as it is installed. morbench.envs and morbench.baselines live in envs/ and baselines/ (pyproject.toml's
# package-dir), a mapping mypy cannot follow, so the package is laid out as symlinks under build/typecheck and checked
# there; the report names the repository's paths. Extra arguments go to mypy. Exit status: mypy's.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${TYPECHECK_PYTHON:-"$repo/.venv/bin/python"}
# a relative interpreter path (the Makefile passes .venv/bin/python) is taken from the caller's directory, before cd
case "$python" in */*) [ "${python#/}" != "$python" ] || python="$PWD/$python" ;; esac
tree="$repo/build/typecheck"
rm -rf "$tree/morbench"
mkdir -p "$tree/morbench"
for entry in "$repo"/morbench/*; do
    [ "$(basename "$entry")" = __pycache__ ] || ln -s "$entry" "$tree/morbench/"
done
ln -s "$repo/envs" "$tree/morbench/envs"
ln -s "$repo/baselines" "$tree/morbench/baselines"
cd "$tree"
"$python" -m mypy --config-file "$repo/pyproject.toml" -p morbench "$@" \
    | sed -e 's#^morbench/envs/#envs/#' -e 's#^morbench/baselines/#baselines/#'
