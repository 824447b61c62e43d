"""Parameter sweeps over stored forecasts: grid or Optuna TPE, locally or on Ray."""
from .space import SearchSpace, SweepSpaceError, build_space
from .study import SweepSummary, ranked_trials, run_sweep
from .trial import SweepData

__all__ = ["SearchSpace", "SweepData", "SweepSpaceError", "SweepSummary", "build_space", "ranked_trials",
           "run_sweep"]
