"""CLI command implementations, one module per job (registered by kronos_trader.cli)."""
