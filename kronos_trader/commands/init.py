"""`kronos-trader init`: the checkout's commented config.yaml and a strategies/ stub in the
current folder, so an installed user starts where a checkout user does."""
from __future__ import annotations

import shutil
from pathlib import Path

import typer

from kronos_trader.commands.common import console, friendly
from kronos_trader.config import DEMO_CONFIG_PATH

STUB = Path(__file__).resolve().parents[1] / "assets" / "init" / "my_strategy.py"


def register(app: typer.Typer) -> None:
    app.command("init")(friendly(init))


def init(force: bool = typer.Option(False, "--force", help="overwrite files that exist")) -> None:
    """Write a commented config.yaml (the demo) and strategies/my_strategy.py into this folder."""
    targets = {Path("config.yaml"): DEMO_CONFIG_PATH, Path("strategies") / "my_strategy.py": STUB}
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exists already: nothing written (--force overwrites)")
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        console.print(f"wrote {target}", highlight=False)
    console.print("next: kronos-trader backtest (the demo), then edit config.yaml; strategy.name "
                  "strategies.my_strategy:MyStrategy uses the stub", highlight=False)
