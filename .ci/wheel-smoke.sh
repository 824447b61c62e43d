#!/usr/bin/env bash
# Packaging check (run by .ci/run): build the wheel from the checkout, install it into a fresh
# virtualenv (torch through the constraints file: the CPU wheel already on disk), and run the
# installed CLI from an empty folder outside the checkout: --version, init, a forecast and a
# short backtest of the bundled demo. Prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/kronos_trader-*.whl)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q -c "$PWD/.ci/constraints.txt" "$wheel"
mkdir "$work/empty"
cd "$work/empty"
kt="$work/venv/bin/kronos-trader"
expected="$(python -c 'import kronos_trader; print(kronos_trader.__version__)')"
[[ "$("$kt" --version)" == "kronos-trader $expected" ]] || { echo "wrong version: $("$kt" --version)" >&2; exit 1; }
"$kt" init >/dev/null
[[ -f config.yaml && -f strategies/my_strategy.py ]]
"$kt" forecast --horizon 4 --samples 2 --json >forecast.json
"$kt" backtest --start 2024-12-29 --no-progress --json >summary.json
"$work/venv/bin/python" - <<'PY'
import json
forecast, summary = json.load(open("forecast.json")), json.load(open("summary.json"))
assert len(forecast["bars"]) == 4, forecast
assert summary["metrics"]["strategy"] and summary["start"] < "2024-12-29", summary["start"]
PY
echo "wheel smoke test passed: $(du -h "$wheel" | cut -f1) wheel, $((SECONDS - started)) s"
