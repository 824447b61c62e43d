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


def test_the_http_library_does_not_log_the_webhook_token_at_debug(caplog):
    """apprise posts with requests: urllib3 logs each request line ("POST /hook/TOKEN?...")
    at DEBUG, which `paper --log-level DEBUG` shows. The token must not appear there either."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from kronos_trader.notify import Notifier

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        caplog.set_level(logging.DEBUG)
        url = f"json://127.0.0.1:{server.server_port}/hook/{SECRET_HOOK}?token={SECRET_HOOK}"
        Notifier([url]).send("gate closed", "BTC/USDT")
    finally:
        server.shutdown()
        server.server_close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"POST /' in text, "no request line reached the log: the test would prove nothing"
    assert SECRET_HOOK not in text
