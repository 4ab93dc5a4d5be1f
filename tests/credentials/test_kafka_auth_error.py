"""The broker's answer to wrong credentials reaches the client (tsrouter/kafka_private/fixes.py, fix 2).

Kafka sends the SaslAuthenticate error and closes the connection together; unfixed,
kafka-python 3.0.12 drops the answer when both arrive in one read and reports only
"socket disconnected", so the router cannot name the cause in readiness.
"""

from __future__ import annotations

import logging

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from tsrouter.kafka_private import fixes

pytestmark = pytest.mark.kafka

ATTEMPTS = 3


class _Losses(logging.Handler):
    """The reasons kafka-python gives for each lost connection."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.reasons: list[str] = []

    def emit(self, record):
        text = record.getMessage()
        if "Connection lost:" in text:
            self.reasons.append(text.split("Connection lost:", 1)[1].strip())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_every_rejected_login_is_reported_as_an_authentication_failure(sasl_broker, mechanism):
    fixes.install()
    losses = _Losses()
    logger = logging.getLogger("kafka.net.connection")
    logger.addHandler(losses)
    # The router's log set-up (tsrouter.logs, run in-process by earlier tests) quiets the
    # "kafka" loggers; this test reads kafka-python's own ERROR records.
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        for _ in range(ATTEMPTS):
            with pytest.raises(KafkaError):
                KafkaAdminClient(
                    bootstrap_servers=sasl_broker.sasl_bootstrap,
                    security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism=mechanism,
                    sasl_plain_username="alice",
                    sasl_plain_password="not-" + sasl_broker.sasl_users["alice"],
                    bootstrap_timeout_ms=1_500,
                    request_timeout_ms=5_000,
                )
    finally:
        logger.removeHandler(losses)
        logger.setLevel(level)
    # Bootstrap gives up by timing out its last try; every other loss is the broker's "no".
    rejected = [r for r in losses.reasons if "RequestTimedOutError" not in r]
    assert len(rejected) >= ATTEMPTS
    assert [r for r in rejected if "SaslAuthenticationFailedError" not in r] == []
