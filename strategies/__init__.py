"""Decision policies named in config (`strategy.name: strategies.<module>:<Class>`).

A `strategies/` folder in the current directory (what `kronos-trader init` writes) extends
this package, so a user's `strategies.my_strategy:MyStrategy` loads beside the bundled ones
from an installed package too.
"""
from pathlib import Path as _Path

_local = _Path.cwd() / "strategies"
if _local.is_dir() and str(_local.resolve()) not in {str(_Path(p).resolve()) for p in __path__}:
    __path__.append(str(_local))
