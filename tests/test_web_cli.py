"""`kronos-trader web`: registration, defaults from the config, and flag overrides."""
from __future__ import annotations

import typer
from typer.testing import CliRunner

from kronos_trader.commands import web as web_command


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test CLI"""

    web_command.register(app)
    return app


def _capture(monkeypatch) -> dict:
    import uvicorn

    seen: dict = {}

    def fake_run(app, host, port, **kwargs):
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_help_lists_host_and_port():
    result = CliRunner().invoke(_app(), ["web", "--help"])
    assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output


def test_defaults_bind_loopback_7070(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.yaml here: built-in defaults
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(_app(), ["web"])
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 7070)
    assert seen["app"].state.ctx.settings.web.port == 7070


def test_flags_and_config_override(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("web:\n  port: 8081\n  max_upload_mb: 5\n  api_key_env: KT_TEST_WEB_KEY\n")
    seen = _capture(monkeypatch)
    args = ["web", "--config", str(cfg), "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    monkeypatch.delenv("KT_TEST_WEB_KEY", raising=False)
    refused = CliRunner().invoke(_app(), args)  # beyond loopback only with an API key
    assert refused.exit_code == 2 and "needs an API key" in refused.output and not seen
    monkeypatch.setenv("KT_TEST_WEB_KEY", "s3cret")
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 8081) and "need the key" in result.output
    assert seen["app"].state.ctx.settings.web.max_upload_mb == 5


def test_bad_config_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("web:\n  port: 99999\n")
    result = CliRunner().invoke(_app(), ["web", "--config", str(cfg)])
    assert result.exit_code == 2 and "web.port" in result.output
