#!/usr/bin/env bash
# Packaging check (run by .ci/run): build the wheel from the checkout, install it into a fresh
# virtualenv outside the checkout, and run the installed CLI from an empty folder: --version,
# init, a forecast and a short backtest of the bundled demo. Kept fast: the dependencies are
# pinned to the versions this venv has just installed (their wheels are in pip's cache, torch
# is the CPU wheel on disk through the constraints file) and not byte-compiled. Prints how
# long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/kronos_trader-*.whl)"
expected="$(python -c 'import kronos_trader; print(kronos_trader.__version__)')"
python -m pip freeze --exclude-editable | grep -v -i '^kronos' >"$work/pins.txt"
cd "$work"  # nothing of the checkout on the new venv's path (its egg-info would pass for an install)
python3 -m venv "$work/venv"
run() { env -u PYTHONPATH "$@"; }
run "$work/venv/bin/python" -m pip install -q --no-compile -c "$root/.ci/constraints.txt" -c pins.txt "$wheel" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
installed=$SECONDS
mkdir empty
cd empty
kt="$work/venv/bin/kronos-trader"
[[ "$(run "$kt" --version)" == "kronos-trader $expected" ]] || { echo "wrong version: $(run "$kt" --version)" >&2; exit 1; }
run "$kt" init >/dev/null
[[ -f config.yaml && -f strategies/my_strategy.py ]]
run "$kt" forecast --horizon 4 --samples 2 --json >forecast.json
run "$kt" backtest --start 2024-12-30 --no-progress --json >summary.json
run "$work/venv/bin/python" - <<'PY'
import json
import sys

import kronos_trader

assert kronos_trader.__file__.startswith(sys.prefix), kronos_trader.__file__  # the wheel's, not the checkout's
forecast, summary = json.load(open("forecast.json")), json.load(open("summary.json"))
assert len(forecast["bars"]) == 4, forecast
assert summary["metrics"]["strategy"] and summary["start"] < "2024-12-30", summary["start"]
PY
echo "wheel smoke test passed: $(du -h "$wheel" | cut -f1) wheel, $((SECONDS - started)) s" \
     "(build and install $((installed - started)) s, demo $((SECONDS - installed)) s)"
