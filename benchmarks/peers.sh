#!/usr/bin/env bash
# Create an isolated virtual environment holding the peer linters the benchmark
# compares gradlint against: ruff (the speed yardstick) and TorchFix (a LibCST-based
# PyTorch linter). They live apart from gradlint's own environment so that their
# pinned dependencies (TorchFix caps libcst < 1.6) never disturb it.
#
# Usage: benchmarks/peers.sh [VENV_DIR]        (default: /tmp/gradlint-peers)
#        PYTHON=python3.11 benchmarks/peers.sh  (interpreter used to create the venv)
#
# TorchFix 0.7 declares flake8, PyYAML and libcst only -- no torch -- so installing it
# cannot pull a CUDA build of torch. The script checks that from the wheel's metadata
# before installing and refuses to continue if a future release starts requiring torch
# unpinned; in that case it installs the CPU-sized torch==2.13.0 first.
set -euo pipefail

venv="${1:-/tmp/gradlint-peers}"
python="${PYTHON:-python3}"
torch_pin="torch==2.13.0"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# pip: quiet, without the warnings about local index mirrors that are absent on this machine.
pip_run() { "${pip[@]}" "$@" 2> >(grep -v 'is neither a file nor a directory' >&2); }

# Inspect TorchFix's declared dependencies before installing anything.
meta_dir="$(mktemp -d)"
trap 'rm -rf "$meta_dir"' EXIT
pip_run download --no-deps torchfix -d "$meta_dir"
wheel="$(ls "$meta_dir"/*.whl | head -n 1)"
requires="$("$venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(name).decode()
for line in text.splitlines():
    if line.startswith("Requires-Dist:") and "extra ==" not in line:
        print(line.split(":", 1)[1].strip())
PY
)"
echo "TorchFix runtime requirements: $(echo "$requires" | tr '\n' ' ')"
if echo "$requires" | grep -qiE '^torch([^a-z]|$)'; then
    echo "TorchFix requires torch: installing $torch_pin (CPU wheel) first"
    pip_run install "$torch_pin"
fi

pip_run install ruff torchfix
echo "peers installed in $venv:"
"$venv/bin/ruff" --version
"$venv/bin/python" -c "import importlib.metadata as m; print('torchfix', m.version('torchfix'), '(libcst', m.version('libcst') + ')')"
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/python" -c "import torch; print('torch', torch.__version__)"
fi
