"""Sweeps on Ray: a local head on 127.0.0.1 with 2 CPUs, forecast shards on actors, trials as
tasks, the study in PostgreSQL."""
from __future__ import annotations

import pytest
from optuna.trial import TrialState

from kronos_trader.config import parse_settings
from kronos_trader.sweep import SweepData, run_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_head():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", object_store_memory=150 * 2**20,
             log_to_driver=False)
    yield
    ray.shutdown()


def _ray_processes(title: bytes) -> list[int]:
    """Pids of the processes Ray titled `title` (`ray::<actor class or task>`), from /proc."""
    from pathlib import Path

    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and title in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _settings(fast_settings, url, **sweep):
    raw = fast_settings.model_dump(mode="json")
    raw["database"]["url"] = url
    raw["sweep"] = {"sampler": "grid", "executor": "ray", "workers": 2,
                    "params": {"strategy.params.long_threshold": [0.4, 0.6, 0.8, 1.0]}, **sweep}  # distinct at 4 paths
    return parse_settings(raw)


def test_postgres_sweep_across_two_ray_workers(ray_head, fast_settings, fresh_pg_url, sample_candles):
    data = SweepData({"BTC/USDT": sample_candles.iloc[:160]}, "1h")
    settings = _settings(fast_settings, fresh_pg_url)
    summary = run_sweep(settings, data, progress=False)
    trials = summary.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4 and summary.failed == 0
    assert summary.forecasts_computed == 160 - 31  # by the shard actors, into PostgreSQL
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers
    # the same sweep locally gives the same scores (the trials read the same stored forecasts)
    local = run_sweep(_settings(fast_settings, fresh_pg_url, executor="local", name="local-copy"), data,
                      progress=False)
    assert local.forecasts_computed == 0
    by_params = {t.params["strategy.params.long_threshold"]: t.value for t in trials}
    assert {t.params["strategy.params.long_threshold"]: t.value for t in local.study.trials} == pytest.approx(by_params)


def test_a_killed_forecast_actor_is_restarted_and_the_precompute_finishes(ray_head, fast_settings, tmp_path):
    # issue 23.6: kill -9 of a forecast actor aborted the sweep (ActorDiedError) and lost its work
    import os
    import signal
    import threading
    import time

    from factories import make_candles

    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.store import open_store
    from kronos_trader.sweep.executors import RayExecutor

    raw = fast_settings.model_dump(mode="json")
    raw["forecast"]["batch_windows"] = 64
    raw["sweep"] = {"executor": "ray", "workers": 2, "params": {"strategy.params.long_threshold": [0.5]}}
    settings = parse_settings(raw)
    candles = make_candles(1600, seed=3)
    killed = []

    def kill_one_while_it_works():
        for _ in range(600):
            pids = _ray_processes(b"ray::ForecastShards")
            if pids:
                time.sleep(3.0)  # it has loaded the model and is storing batches
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.1)

    executor = RayExecutor(settings, progress=False)
    threading.Thread(target=kill_one_while_it_works, daemon=True).start()
    executor.precompute(SweepData({"AAA/USDT": candles}, "1h"))
    executor.close()
    assert killed, "no forecast actor was running to kill"
    check = ForecastService.from_settings(settings, open_store(settings.database.url), False, model=executor.model)
    check.forecast_series(candles, "AAA/USDT", "1h")  # reads only: a window that was not stored raises
    assert check.reused == 1600 - 31 and check.computed == 0


def test_a_trial_whose_worker_is_killed_is_retried_not_scored(ray_head, fast_settings, sample_candles):
    # issue 23.6: kill -9 of a trial worker counted the trial as failed against the budget
    import os
    import signal
    import threading
    import time

    settings = _settings(fast_settings, fast_settings.database.url, name="killed-trial")
    killed, stop = [], threading.Event()

    def kill_a_running_trial():
        while not stop.is_set() and not killed:
            for pid in _ray_processes(b"ray::_remote_trial"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.005)

    threading.Thread(target=kill_a_running_trial, daemon=True).start()
    try:
        summary = run_sweep(settings, SweepData({"BTC/USDT": sample_candles.iloc[:200]}, "1h"), progress=False)
    finally:
        stop.set()
    assert killed, "no trial was running to kill"
    trials = summary.study.get_trials()
    assert summary.failed == 0 and not [t for t in trials if t.user_attrs.get("error")]
    assert sorted(t.params["strategy.params.long_threshold"] for t in trials if t.state == TrialState.COMPLETE) \
        == [0.4, 0.6, 0.8, 1.0]


def test_fine_tuned_sweep_on_ray_trains_each_fold_once_and_trials_trade_on_them(ray_head, fast_settings,
                                                                                 sample_candles, tmp_path):
    """--refit-every on the Ray executor: the driver trains every fold model once before
    dispatch; the shard actors forecast each window with its fold's stored model and the
    trials read those forecasts; the same sweep locally scores the same (nothing recomputed)."""
    raw = fast_settings.model_dump(mode="json")
    raw["finetune"] = {"refit_every": "100", "train_bars": 120, "epochs": 1, "batch_size": 8, "stride": 8,
                       "lr": 1e-4, "cache_dir": str(tmp_path / "folds")}
    raw["sweep"] = {"sampler": "grid", "executor": "ray", "workers": 2,
                    "params": {"strategy.params.long_threshold": [0.4, 0.6]}}
    data = SweepData({"BTC/USDT": sample_candles.iloc[:260]}, "1h")
    summary = run_sweep(parse_settings(raw), data, progress=False)
    trials = summary.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and summary.failed == 0
    assert summary.forecasts_computed == 260 - 31
    folds = sorted((tmp_path / "folds").iterdir())
    assert len(folds) == 2  # refits at bars 120 and 220, each trained once
    raw["sweep"] = {**raw["sweep"], "executor": "local", "name": "local-copy"}
    local = run_sweep(parse_settings(raw), data, progress=False)
    assert local.forecasts_computed == 0  # the actors stored them under the fold models' ids
    assert sorted((tmp_path / "folds").iterdir()) == folds
    by_params = {t.params["strategy.params.long_threshold"]: t.value for t in trials}
    assert {t.params["strategy.params.long_threshold"]: t.value for t in local.study.trials} == pytest.approx(by_params)


def test_a_fold_model_pruned_before_the_actors_load_it_is_a_one_line_error(ray_head, fast_settings, sample_candles,
                                                                          tmp_path, monkeypatch):
    """Another run's keep_models pruning can delete a fold model after the driver trained it
    and before the shard actors load it: the sweep stops with one line naming it."""
    import shutil

    from kronos_trader.sweep.executors import RayExecutor

    raw = fast_settings.model_dump(mode="json")
    raw["finetune"] = {"refit_every": "100", "train_bars": 120, "epochs": 1, "batch_size": 8, "stride": 8,
                       "lr": 1e-4, "cache_dir": str(tmp_path / "folds")}
    raw["sweep"] = {"sampler": "grid", "executor": "ray", "workers": 2,
                    "params": {"strategy.params.long_threshold": [0.4, 0.6]}}
    trained = RayExecutor._train_folds

    def then_pruned(self, data):
        folds = trained(self, data)
        shutil.rmtree(folds[0][0])  # what another process's prune_fold_models does in between
        return folds

    monkeypatch.setattr(RayExecutor, "_train_folds", then_pruned)
    with pytest.raises(ValueError, match="fold model .* was deleted before it was loaded") as err:
        run_sweep(parse_settings(raw), SweepData({"BTC/USDT": sample_candles.iloc[:260]}, "1h"), progress=False)
    assert "\n" not in str(err.value)
