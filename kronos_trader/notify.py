"""Optional notifications (webhook, Telegram, e-mail, ...) through apprise; off by default.

The destinations are apprise URLs read from an environment variable (config
`paper.notify_urls_env`, e.g. KRONOS_NOTIFY_URLS="tgram://TOKEN/CHAT json://host/hook"), so
their secrets stay out of the repository and the database. A URL is never logged: a failure
reports only the scheme.
"""
from __future__ import annotations

import logging
import os
import re

__all__ = ["Notifier", "notifier_from_env"]

log = logging.getLogger(__name__)


class _Redact(logging.Filter):
    """apprise logs the URLs it loads and posts to (tokens included) at DEBUG: every part of
    a configured URL that may be a secret is masked in its records."""

    def __init__(self, urls: list[str]):
        super().__init__()
        parts = {p for url in urls for p in re.split(r"[/:@?&=#,]+", url.split("://", 1)[-1]) if len(p) >= 4}
        self.secrets = sorted(parts | set(urls), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, ()
        return True


class Notifier:
    """Sends a title and body to every configured destination; never raises."""

    def __init__(self, urls: list[str]):
        import apprise

        redact = _Redact(urls)
        for name in ("apprise", "urllib3.connectionpool"):  # the latter logs request lines at DEBUG
            logging.getLogger(name).addFilter(redact)
        self._apprise = apprise.Apprise()
        self.schemes = []
        for url in urls:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            if self._apprise.add(url):
                self.schemes.append(scheme)
            else:
                log.warning("notification destination with scheme %r not understood by apprise: skipped", scheme)

    def send(self, title: str, body: str) -> bool:
        if not self.schemes:
            return False
        try:
            return bool(self._apprise.notify(title=title, body=body))
        except Exception as exc:  # a notification must never stop trading
            log.warning("notification failed (%s)", type(exc).__name__)
            return False


def notifier_from_env(variable: str | None) -> Notifier | None:
    """A Notifier for the apprise URLs in `variable` (space or comma separated); None when
    notifications are off (no variable configured, or it is empty)."""
    if not variable:
        return None
    urls = [u for u in os.environ.get(variable, "").replace(",", " ").split() if u]
    if not urls:
        return None
    try:
        return Notifier(urls)
    except ImportError:
        log.warning("paper.notify_urls_env is set but apprise is not installed: pip install 'kronos-trader[notify]'")
        return None
