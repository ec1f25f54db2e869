#!/usr/bin/env bash
# CI: the lowest transformers that pyproject.toml allows, tested on the sampling loop and the env contract.
# The packages that transformers==LOW needs beyond .venv (pip's own resolution against .venv, dry run) go into
# an overlay directory put first on PYTHONPATH, so .venv itself is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
low=$("$PY" - <<'PYEOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
spec = next(d for d in deps if re.match(r"transformers\b", d))
print(re.search(r">=\s*([0-9][0-9.]*)", spec).group(1))
PYEOF
)
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
"$PY" -m pip install --quiet --dry-run --ignore-requires-python --report "$overlay/plan.json" "transformers==$low" 2>/dev/null
mapfile -t pins < <("$PY" -c "
import json, sys
for item in json.load(open(sys.argv[1]))['install']:
    print(item['metadata']['name'] + '==' + item['metadata']['version'])
" "$overlay/plan.json")
echo "lowest supported transformers: $low (overlay: ${pins[*]})"
"$PY" -m pip install --quiet --no-deps --target "$overlay/site" "${pins[@]}" 2>/dev/null
PYTHONPATH="$overlay/site" "$PY" -c "
import transformers
from packaging.version import Version
assert Version(transformers.__version__) == Version('$low'), transformers.__version__"
PYTHONPATH="$overlay/site" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_sampling.py tests/test_env_contract.py
