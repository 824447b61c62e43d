"""Parameter sweeps: space checks, stored forecasts shared by trials, resume, walk-forward, CLI."""
from __future__ import annotations

import math
import socket

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.cli import app
from kronos_trader.config import parse_settings
from kronos_trader.store import open_store
from kronos_trader.sweep import SweepData, SweepSpaceError, build_space, run_sweep
from kronos_trader.sweep.objective import score
from kronos_trader.sweep.space import with_params
from kronos_trader.sweep.storage import study_storage
from kronos_trader.sweep.study import interrupted as is_interrupted


def _settings(fast_settings, **sweep):
    raw = fast_settings.model_dump(mode="json")
    raw["sweep"] = {"sampler": "grid", "params": {"strategy.params.long_threshold": [0.4, 0.6],
                                                  "risk.stop_loss": [0.02, 0.05]},
                    "min_trades": 0, **sweep}  # short test spans: the min-trades rule has its own test
    return parse_settings(raw)


@pytest.fixture
def data(sample_candles):
    return SweepData({"BTC/USDT": sample_candles.iloc[:200]}, "1h")


@pytest.mark.parametrize("params, message", [
    ({}, "sweep.params is empty"),
    ({"strategy.params.nope": [1]}, "unknown parameter 'strategy.params.nope'"),
    ({"backtest.cash": [1.0]}, "not sweepable parameter 'backtest.cash'"),
    ({"forecast.horizon": [4, 8]}, "changes the forecasts"),
    ({"strategy.params.long_threshold": []}, "empty list"),
    ({"strategy.params.long_threshold": {"low": 0.7, "high": 0.5, "step": 0.1}}, "empty range"),
    ({"strategy.params.long_threshold": {"low": 0.5, "high": 0.7}}, "a grid needs a step"),
    ({"strategy.params.short_threshold": [0.2, 0.9]}, "short_threshold must not exceed long_threshold"),
    ({"risk.stop_loss": [0.05, 2.0]}, "risk.stop_loss"),
    ({"backtest.stop_loss": [0.05, 2.0]}, "risk.stop_loss"),  # the old name is an alias
    ({"risk.cash": [1.0]}, "unknown parameter 'risk.cash'"),
    ({"backtest.stop_loss": [0.02], "risk.stop_loss": [0.05]},
     "'backtest.stop_loss' and 'risk.stop_loss' are the same setting"),
])
def test_bad_spaces_are_one_line_errors_before_any_forecast(fast_settings, data, params, message):
    settings = _settings(fast_settings, params=params)
    with pytest.raises(SweepSpaceError, match=message) as err:
        run_sweep(settings, data, progress=False)
    assert "\n" not in str(err.value)
    assert _stored_forecasts(settings) == 0


def _stored_forecasts(settings) -> int:
    import sqlalchemy as sa

    with open_store(settings.database.url).engine.connect() as conn:
        return conn.execute(sa.text("select count(*) from forecasts")).scalar_one()


def test_tpe_space_has_ranges_and_choices(fast_settings):
    settings = _settings(fast_settings, sampler="tpe", params={
        "strategy.params.long_threshold": {"low": 0.5, "high": 0.7}, "strategy.params.allow_short": [True, False],
        "strategy.params.sizing.fraction": {"low": 0.5, "high": 1.0, "step": 0.25}})
    space = build_space(settings, settings.sweep)
    assert space.grid is None
    assert isinstance(space.distributions["strategy.params.long_threshold"], optuna.distributions.FloatDistribution)
    trial = with_params(settings, {"strategy.params.sizing.fraction": 0.5})
    assert trial.strategy.params["sizing"] == {"fraction": 0.5}


def test_trial_settings_change_the_shared_risk_and_cost_sections(fast_settings):
    settings = _settings(fast_settings, params={"backtest.commission": [0.001, 0.002], "risk.stop_loss": [0.03]})
    assert build_space(settings, settings.sweep).names == ["costs.commission", "risk.stop_loss"]
    trial = with_params(settings, {"risk.stop_loss": 0.03, "risk.take_profit": None, "costs.slippage": 0.002,
                                   "backtest.commission": 0.004})
    assert (trial.risk.stop_loss, trial.risk.take_profit) == (0.03, None)  # what run_backtest reads
    assert (trial.costs.commission, trial.costs.slippage) == (0.004, 0.002)
    assert (trial.backtest.stop_loss, trial.backtest.commission) == (0.03, 0.004)  # legacy copies follow
    assert with_params(trial, {"strategy.params.long_threshold": 0.6}).risk == trial.risk  # and re-parse


def test_objectives():
    metrics = {"sharpe": 1.5, "sortino": 2.0, "total_return": 0.2, "annual_return": 0.4, "max_drawdown": -0.1,
               "exposure": 0.5}
    assert score(metrics, "sharpe") == 1.5
    assert score(metrics, "calmar") == pytest.approx(4.0)
    assert score(metrics, "total_return", max_drawdown=0.2) == 0.2
    assert score(metrics, "total_return", max_drawdown=0.05) == -math.inf
    assert score({**metrics, "sharpe": float("nan"), "exposure": 0.0}, "sharpe") == 0.0


def test_grid_sweep_shares_forecasts_and_matches_a_plain_backtest(fast_settings, data):
    settings = _settings(fast_settings)
    summary = run_sweep(settings, data, progress=False)
    trials = summary.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4 and summary.trials_run == 4
    assert summary.forecasts_computed == 200 - 32 + 1  # once, before the trials
    assert {tuple(sorted(t.params.items())) for t in trials} == {
        tuple(sorted({"strategy.params.long_threshold": a, "risk.stop_loss": b}.items()))
        for a in (0.4, 0.6) for b in (0.02, 0.05)}
    # each trial is the same backtest the `backtest` command runs with those settings
    best = summary.study.best_trial
    plain = run_backtest(with_params(settings, best.params), data.panel["BTC/USDT"], "BTC/USDT", "1h",
                         open_store(settings.database.url), progress=False)
    assert best.value == pytest.approx(plain.metrics["strategy"]["sharpe"], nan_ok=True)
    assert best.user_attrs["metrics"]["trades"] == plain.metrics["strategy"]["trades"]
    assert (plain.forecasts_computed, plain.forecasts_reused) == (0, 169)  # the sweep stored them all
    # a rerun of a finished grid asks for nothing and computes nothing
    again = run_sweep(settings, data, progress=False)
    assert again.trials_run == 0 and again.forecasts_computed == 0 and len(again.study.trials) == 4


def test_killed_sweep_resumes_without_duplicates(fast_settings, data):
    settings = _settings(fast_settings, name="resume")
    # a first run that stops after two trials and leaves a third one running
    from kronos_trader.sweep.space import build_space as space_of
    from kronos_trader.sweep.study import open_study

    space = space_of(settings, settings.sweep)
    study = open_study(settings, data, space)
    for point in space.grid[:2]:
        study.enqueue_trial(point)
        study.tell(study.ask(space.distributions), 1.0)
    left = study.ask(space.distributions)  # its process was killed while it ran: RUNNING forever
    left.set_user_attr("owner", f"{socket.gethostname()}:{_dead_pid()}:x")
    summary = run_sweep(settings, data, progress=False)
    trials = summary.study.get_trials()
    interrupted = [t for t in trials if is_interrupted(t)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(interrupted) == 1
    keys = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(keys)) == len(keys) == 4  # every grid point exactly once
    assert summary.trials_run == 2


def test_failing_trial_is_recorded_and_the_sweep_goes_on(fast_settings, data):
    # a trial whose backtest raises (here: injected at one grid point) fails alone
    settings = _settings(fast_settings, sampler="grid", params={"strategy.params.long_threshold": [0.4, 0.6]})
    from kronos_trader.sweep import trial as trial_module

    real = trial_module.run_backtest

    def flaky(s, *args, **kwargs):
        if s.strategy.params["long_threshold"] == 0.6:
            raise RuntimeError("disk on fire")
        return real(s, *args, **kwargs)

    trial_module.run_backtest = flaky
    try:
        summary = run_sweep(settings, data, progress=False)
    finally:
        trial_module.run_backtest = real
    states = {t.params["strategy.params.long_threshold"]: t for t in summary.study.trials}
    assert states[0.4].state == TrialState.COMPLETE
    assert states[0.6].state == TrialState.FAIL and states[0.6].user_attrs["error"] == "RuntimeError: disk on fire"
    assert summary.failed == 1


def test_walk_forward_scores_the_next_span(fast_settings, data):
    settings = _settings(fast_settings, walk_forward=0.5, params={"strategy.params.long_threshold": [0.4, 0.6]})
    summary = run_sweep(settings, data, progress=False)
    t = summary.study.best_trial
    first_test = pd.Timestamp(t.user_attrs["oos_equity"][0][0])
    last_train = pd.Timestamp(t.user_attrs["equity"][-1][0])
    assert first_test > last_train
    split = 31 + int(0.5 * (200 - 31))
    test_candles = data.panel["BTC/USDT"].iloc[split - 31:]
    plain = run_backtest(with_params(settings, t.params), test_candles, "BTC/USDT", "1h", None, progress=False)
    assert t.user_attrs["oos_value"] == pytest.approx(plain.metrics["strategy"]["sharpe"])
    assert summary.forecasts_computed == 200 - 31  # the spans share the forecasts computed once


def test_changed_space_under_the_same_name_is_refused(fast_settings, data):
    run_sweep(_settings(fast_settings, name="s1", params={"strategy.params.long_threshold": [0.4]}), data,
              progress=False)
    with pytest.raises(ValueError, match="exists .* with another space"):
        run_sweep(_settings(fast_settings, name="s1", params={"strategy.params.long_threshold": [0.5]}), data,
                  progress=False)


def test_cli_sweep_tpe_and_errors(fast_settings, tmp_path, sample_candles):
    import yaml

    path = tmp_path / "candles.csv"
    sample_candles.iloc[:150].to_csv(path)
    raw = fast_settings.model_dump(mode="json")
    raw["data"]["path"] = str(path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    ok = runner.invoke(app, ["sweep", "-c", str(config), "--sampler", "tpe", "--trials", "5", "--no-progress",
                             "--param", "strategy.params.long_threshold=0.3:0.7",
                             "--param", "risk.take_profit=0.05,0.1"])
    assert ok.exit_code == 0, ok.output
    assert "5 trials run in" in ok.output and "(0 failed)" in ok.output and "best trial #" in ok.output
    bad = runner.invoke(app, ["sweep", "-c", str(config), "--param", "strategy.params.colour=1,2"])
    assert bad.exit_code == 1 and "unknown parameter 'strategy.params.colour'" in bad.output
    assert "Traceback" not in bad.output
    ray = runner.invoke(app, ["sweep", "-c", str(config), "--executor", "ray", "--ray-address", "127.0.0.1:9",
                              "--param", "strategy.params.long_threshold=0.4,0.6"])
    assert ray.exit_code == 1 and "cannot connect" in ray.output, ray.output
    summaries = optuna.get_all_study_summaries(study_storage(fast_settings.database.url))
    assert len(summaries) == 1  # the failed commands created no study


def test_sweep_of_topk_over_several_symbols(fast_settings, tmp_path):
    from factories import make_candles

    panel = {s: make_candles(120, seed=i) for i, s in enumerate(("AAA/USDT", "BBB/USDT"))}
    raw = fast_settings.model_dump(mode="json")
    raw["strategy"] = {"name": "strategies.cross_sectional:TopK", "params": {"every": 4}}
    raw["sweep"] = {"sampler": "grid", "objective": "total_return", "min_trades": 0,
                    "params": {"strategy.params.k": [1, 2], "strategy.params.signal": ["return", "p_up"]}}
    settings = parse_settings(raw)
    summary = run_sweep(settings, SweepData(panel, "1h"), progress=False)
    assert summary.forecasts_computed == 2 * (120 - 31)
    assert len(summary.study.get_trials(states=(TrialState.COMPLETE,))) == 4
    best = summary.study.best_trial
    plain = run_backtest(with_params(settings, best.params), panel, "", "1h", None, progress=False)
    assert best.value == pytest.approx(plain.metrics["strategy"]["total_return"])
    bad = parse_settings({**raw, "sweep": {**raw["sweep"], "params": {"strategy.params.k": [0, 1]}}})
    with pytest.raises(SweepSpaceError, match="k must be at least 1"):
        run_sweep(bad, SweepData(panel, "1h"), progress=False)


def test_ray_workers_get_absolute_paths(fast_settings, tmp_path, monkeypatch):
    from kronos_trader.sweep.executors import for_workers

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pair").mkdir()
    raw = fast_settings.model_dump(mode="json")
    raw["database"]["url"], raw["model"]["name"] = "sqlite:///kt.db", "pair"
    s = for_workers(parse_settings(raw))
    assert s.database.url == f"sqlite:///{tmp_path / 'kt.db'}" and s.model.name == str(tmp_path / "pair")
    raw["database"]["url"], raw["model"]["name"] = "postgresql+psycopg://u:secret@db:5432/kt", "kronos-small"
    s = for_workers(parse_settings(raw))
    assert s.database.url == "postgresql+psycopg://u:secret@db:5432/kt" and s.model.name == "kronos-small"


def _points(study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.get_trials(states=(TrialState.COMPLETE,))
            if "discarded" not in t.user_attrs]


def test_resumed_tpe_study_continues_the_sampler_and_never_repeats_a_point(fast_settings, data):
    # issue 23.3: every process rebuilt TPESampler(seed=...), so a resume re-asked the first points
    params = {"strategy.params.long_threshold": {"low": 0.3, "high": 0.7}, "risk.stop_loss": {"low": 0.01, "high": 0.1}}
    settings = _settings(fast_settings, sampler="tpe", trials=3, params=params, name="tpe-resume")
    first = run_sweep(settings, data, progress=False)
    assert first.trials_run == 3
    resumed = run_sweep(_settings(fast_settings, sampler="tpe", trials=6, params=params, name="tpe-resume"), data,
                        progress=False)
    assert resumed.trials_run == 3
    points = _points(resumed.study)
    assert len(points) == len(set(points)) == 6
    # a space with fewer points than the budget: each point once, then the sweep says so and stops
    small = _settings(fast_settings, sampler="tpe", trials=6, name="tpe-small",
                      params={"strategy.params.long_threshold": [0.4, 0.6], "risk.stop_loss": [0.02, 0.05]})
    summary = run_sweep(small, data, progress=False)
    points = _points(summary.study)
    assert len(points) == len(set(points)) == 4 and summary.exhausted


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_owners_trial_is_left_alone_and_a_gone_owners_is_retried(fast_settings, data, monkeypatch):
    # issue 23.5: a second process marked the first's running trial interrupted
    import socket
    import threading
    import time

    from kronos_trader.sweep import study as study_module

    monkeypatch.setattr(study_module, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(study_module, "LEASE_S", 1.5)
    settings = _settings(fast_settings, name="leases")
    space = build_space(settings, settings.sweep)
    study = study_module.open_study(settings, data, space)
    study.enqueue_trial(space.grid[0])
    gone = study.ask(space.distributions)  # its process was killed: a dead pid on this host
    gone.set_user_attr("owner", f"{socket.gethostname()}:{_dead_pid()}:x")
    study.enqueue_trial(space.grid[1])
    alive = study.ask(space.distributions)  # another machine's process, still beating
    alive.set_user_attr("owner", "elsewhere:1:y")
    stop = threading.Event()

    def other_machine():
        while not stop.wait(0.1):
            alive.set_user_attr("heartbeat", time.time())
        study.tell(alive, 0.5)

    beating = threading.Thread(target=other_machine)
    beating.start()
    threading.Timer(3.0, stop.set).start()
    try:
        summary = run_sweep(settings, data, progress=False)
    finally:
        stop.set()
        beating.join()
    trials = summary.study.get_trials()
    assert study.get_trials()[alive.number].state == TrialState.COMPLETE
    assert trials[alive.number].value == 0.5  # told by its owner, never interrupted
    assert trials[gone.number].state == TrialState.FAIL and study_module.interrupted(trials[gone.number])
    assert sorted(_points(summary.study)) == sorted(tuple(sorted(p.items())) for p in space.grid)
    assert summary.trials_run == 3  # the gone owner's point is run again; the live owner's is not


def test_two_processes_on_one_postgres_study_finish_the_budget_exactly(fast_settings, fresh_pg_url, tmp_path,
                                                                      sample_candles):
    # issue 23.5: the standard way to scale out, the same command twice against one database
    import os
    import subprocess
    import sys

    import yaml

    path = tmp_path / "candles.csv"
    sample_candles.iloc[:150].to_csv(path)
    raw = fast_settings.model_dump(mode="json")
    raw["data"]["path"], raw["database"]["url"] = str(path), fresh_pg_url
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-c", "from kronos_trader.cli import app; app()", "sweep", "-c", str(config),
               "--sampler", "tpe", "--trials", "10", "--name", "shared", "--no-progress",
               "--param", "strategy.params.long_threshold=0.3:0.7", "--param", "risk.stop_loss=0.01:0.1"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ}) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=study_storage(fresh_pg_url))
    points = _points(study)
    assert len(points) == len(set(points)) == 10
    assert not [t for t in study.get_trials() if t.state == TrialState.FAIL and "discarded" not in t.user_attrs]
    assert all(" 0 failed" in o or "(0 failed)" in o for o in outputs), outputs


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_point_asked_before_an_earlier_trials_point_is_written_runs_once(backend, tmp_path, request):
    # the journal numbers a trial in one row and writes its point in the rows after: a process
    # that judged its trial in between saw no earlier point, and two processes ran one point
    from optuna.distributions import FloatDistribution

    from kronos_trader.sweep.leases import PointClaims
    from kronos_trader.sweep.study import _refusal

    url = f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    storage = study_storage(url)
    study = optuna.create_study(storage=storage, study_name="race", direction="maximize")
    claims = PointClaims.of(url, study)
    dist = FloatDistribution(0.0, 1.0, step=0.25)
    # process A: trial #0 numbered, its point not yet written
    first = storage.create_new_trial(storage.get_study_id_from_name("race"))
    study.enqueue_trial({"a": 0.5})
    late = study.ask({"a": dist})  # process B: trial #1, the same point, judged now
    assert late.number == 1 and _refusal(study, late, 10, claims) is None
    storage.set_trial_param(first, "a", 0.5, dist)  # A's point lands; A judges #0
    early = optuna.Trial(study, first)
    assert _refusal(study, early, 10, claims) == "duplicate of #1"
    early.set_user_attr("discarded", "duplicate of #1")
    study.tell(early, state=TrialState.FAIL)
    study.tell(late, state=TrialState.FAIL)  # #1's owner was gone (reaped): its point may run again, once
    study.enqueue_trial({"a": 0.5})
    again, twin = study.ask({"a": dist}), None
    assert _refusal(study, again, 10, claims) is None
    study.enqueue_trial({"a": 0.5})
    twin = study.ask({"a": dist})
    assert _refusal(study, twin, 10, claims) == f"duplicate of #{again.number}"


def test_precompute_stores_each_batch_as_it_completes(fast_settings, sample_candles):
    # issue 23.7: a kill during the precompute kept nothing; finished batches must stay stored
    from kronos_trader.forecasting.service import ForecastService

    settings = parse_settings({**fast_settings.model_dump(mode="json"),
                               "forecast": {**fast_settings.forecast.model_dump(mode="json"), "batch_windows": 16}})
    service = ForecastService.from_settings(settings, open_store(settings.database.url), False)
    real, calls = service.model.predictor.forecast_batch, []

    def killed_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    service.model.predictor.forecast_batch = killed_on_the_third
    with pytest.raises(KeyboardInterrupt):
        service.forecast_series(sample_candles.iloc[:120], "BTC/USDT", "1h")
    assert _stored_forecasts(settings) == 32


def test_ray_trials_read_stored_forecasts_without_loading_the_model(fast_settings, data):
    # issue 23.9: each Ray trial worker loaded the whole model to read stored forecasts
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.sweep.executors import LocalExecutor, _remote_trial
    from kronos_trader.sweep.trial import TrialJob

    settings = _settings(fast_settings)
    local = LocalExecutor(settings, progress=False)
    local.precompute(data)
    load_model.cache_clear()
    job = TrialJob(settings.model_dump(mode="json"), data, local.model)
    outcome = _remote_trial(job, {"strategy.params.long_threshold": 0.4})  # what a Ray task runs
    assert outcome.error is None and load_model.cache_info().misses == 0
    local.start(job)
    local.submit(0, {"strategy.params.long_threshold": 0.4})
    assert local.collect()[0][1].value == outcome.value
    # a window the precompute did not store is an error on the trial, not a model load
    missing = _remote_trial(TrialJob(settings.model_dump(mode="json"), SweepData(
        {"BTC/USDT": data.panel["BTC/USDT"].iloc[150:200] * 1.01}, "1h"), local.model), {})
    assert "did not store" in missing.error and load_model.cache_info().misses == 0


@pytest.mark.parametrize("reply, message", [(None, "no answer in"), (b"HTTP/1.1 400 Bad Request\r\n\r\n",
                                                                    "not as a Ray head")])
def test_ray_address_from_the_environment_is_checked_in_one_line(fast_settings, monkeypatch, reply, message):
    # issue 23.8: RAY_ADDRESS was ignored, and a port that is not Ray hung for minutes
    import threading

    from kronos_trader.sweep import executors

    monkeypatch.setattr(executors, "CONNECT_S", 0.5)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def answer():
        conn, _ = server.accept()
        held.append(conn)
        if reply:
            conn.recv(64)
            conn.sendall(reply)

    threading.Thread(target=answer, daemon=True).start()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{server.getsockname()[1]}")
    settings = _settings(fast_settings, executor="ray")
    assert executors.ray_address(settings) == f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(ValueError, match=f"RAY_ADDRESS .*{message}") as err:
            executors.check_executor(settings)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert "\n" not in str(err.value)


def test_sweep_dashboard_serves_the_stored_studies(fast_settings, data, tmp_path):
    # issue 23: `optuna-dashboard sqlite:///...` cannot read the journal table; our command can
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    import yaml

    run_sweep(_settings(fast_settings, name="shown", params={"strategy.params.long_threshold": [0.4]}), data,
              progress=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(fast_settings.model_dump(mode="json")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from kronos_trader.cli import app; app()", "sweep-dashboard",
                               "-c", str(config), "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):  # a cold CLI start is slow on a busy machine
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as answer:
                    studies = json.load(answer)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        else:
            pytest.fail("the dashboard did not answer")
        assert [s["study_name"] for s in studies] == ["shown"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_trial_lost_to_the_executor_is_run_again_not_scored(fast_settings, data, monkeypatch):
    # issue 23.6: a killed trial worker counted as a failed trial and its grid point was never reached
    from kronos_trader.sweep import executors
    from kronos_trader.sweep.trial import TrialOutcome

    class LosesTheFirst(executors.LocalExecutor):  # what RayExecutor.collect reports for a dead worker
        lost_once = False

        def submit(self, number, params):
            if not LosesTheFirst.lost_once:
                LosesTheFirst.lost_once = True
                self._done.append((number, TrialOutcome(None, {}, None, "ray: WorkerCrashedError: died")))
                return
            super().submit(number, params)

    monkeypatch.setattr(executors, "LocalExecutor", LosesTheFirst)
    for sampler, params in (("grid", None), ("tpe", {"strategy.params.long_threshold": [0.4, 0.6]})):
        LosesTheFirst.lost_once = False
        extra = {"params": params, "trials": 2} if params else {}
        summary = run_sweep(_settings(fast_settings, sampler=sampler, name=f"lost-{sampler}", **extra), data,
                            progress=False)
        trials = summary.study.get_trials()
        lost = [t for t in trials if "lost" in t.user_attrs]
        assert len(lost) == 1 and lost[0].state == TrialState.FAIL and is_interrupted(lost[0])
        assert summary.failed == 0 and len(_points(summary.study)) == (4 if sampler == "grid" else 2)
        assert tuple(sorted(lost[0].params.items())) in _points(summary.study)  # its point ran after all


class FirstDecisionWarns:
    """Test policy: flat, and a warning naming the first bar it decides (one per backtest)."""

    def __init__(self):
        self.warned = False

    def decide(self, forecast, position):
        import warnings

        from kronos_trader.decision import Decision

        if not self.warned:
            self.warned = True
            warnings.warn(f"first decision at {forecast.window_end}", UserWarning, stacklevel=1)
        return Decision(0.0, "flat")


def test_a_walk_forward_trial_keeps_the_warnings_of_both_spans(fast_settings, data):
    """The in-sample span's warnings were overwritten by the out-of-sample span's."""
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.sweep.trial import TrialJob, run_trial

    raw = fast_settings.model_dump(mode="json")
    raw["strategy"] = {"name": "test_sweep:FirstDecisionWarns", "params": {}}
    settings = parse_settings(raw)
    split = 120
    job = TrialJob(raw, SweepData(data.panel, data.timeframe, split))
    outcome = run_trial(job, {}, ForecastService.from_settings(settings, None, False))
    assert outcome.error is None, outcome.error
    candles = data.panel["BTC/USDT"]
    interval = candles.index[1] - candles.index[0]
    firsts = {f"first decision at {candles.index[p] + interval}" for p in (31, split)}
    assert firsts <= set(outcome.attrs["warnings"]), outcome.attrs["warnings"]
