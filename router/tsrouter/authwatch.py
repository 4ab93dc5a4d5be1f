"""Notice SASL authentication failures that kafka-python only logs.

kafka-python reports wrong credentials as a bootstrap timeout; the broker's real answer
(SaslAuthenticationFailedError) appears only in a log record of `kafka.net.connection`.
This handler remembers when it last saw one, so readiness can say "authentication
failed" instead of "KafkaTimeoutError". It keeps no record text: only a timestamp.
"""

from __future__ import annotations

import logging
import threading
import time

_LOGGER = "kafka.net.connection"
_MARKERS = ("SaslAuthenticationFailedError", "AuthenticationFailed", "Authentication failed")


def is_auth_failure(message: str) -> bool:
    """True for kafka-python's connection-lost message on an authentication failure."""
    return any(m in message for m in _MARKERS)


class AuthFailureWatch(logging.Handler):
    def __init__(self, clock=time.monotonic):
        super().__init__(level=logging.WARNING)
        self._clock = clock
        self._lock_ = threading.Lock()
        self._last: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a log record that cannot be formatted is not ours
            return
        if is_auth_failure(text):
            with self._lock_:
                self._last = self._clock()

    def failed_since(self, t: float) -> bool:
        with self._lock_:
            return self._last is not None and self._last >= t

    def now(self) -> float:
        return self._clock()


def install(debug: bool = False) -> AuthFailureWatch:
    """Attach a watch to kafka-python's connection logger (once per process).

    The router silences the `kafka` loggers; this one is opened just enough for the
    watch to see errors, and its records reach the console only in debug mode."""
    lg = logging.getLogger(_LOGGER)
    for h in lg.handlers:
        if isinstance(h, AuthFailureWatch):
            return h
    watch = AuthFailureWatch()
    lg.addHandler(watch)
    lg.setLevel(logging.INFO if debug else logging.ERROR)
    lg.propagate = debug
    return watch
