"""kronos-trader: backtests and paper trading driven by Kronos forecasts.

`kronos` is imported first so that its OpenMP wait policy (passive waits: a busy machine
does not starve on spinning threads) is set before torch starts its thread pool.
"""
import kronos  # noqa: F401
