"""Notification URLs carry tokens: never logged, not even by apprise at DEBUG (issue 21)."""
from __future__ import annotations

import logging

SECRET_BOT = "8412776501:AAHsecretTelegramBotToken"
SECRET_HOOK = "hooktoken7f3a91c2"


def test_apprise_does_not_log_the_notification_url_at_debug(caplog):
    from kronos_trader.notify import Notifier

    caplog.set_level(logging.DEBUG)
    urls = [f"tgram://{SECRET_BOT}/123456789", f"json://127.0.0.1:9/hook/{SECRET_HOOK}?token={SECRET_HOOK}"]
    notifier = Notifier(urls)
    assert notifier.schemes == ["tgram", "json"]
    notifier.send("gate closed", "BTC/USDT: the forecasts no longer beat a random walk")
    assert caplog.records, "apprise logged nothing at DEBUG: the test would prove nothing"
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (SECRET_BOT, "AAHsecretTelegramBotToken", SECRET_HOOK):
        assert secret not in text
