"""The operator's Kafka clients against a broker nothing answers for: each failed attempt
leaves no thread and no file descriptor behind (kafka-python 3.0.12's constructors start
an IO thread, a selector and sockets before they bootstrap; bench/operator_soak.py found
one thread and four descriptors left per retry of a pipeline with an unreachable broker)."""

from __future__ import annotations

import gc
import logging
import os
import threading

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from localinfra.proc import free_port

from tspipe.kafka_admin import KafkaUnavailable, TopicAdmin, constructed

# A loopback port nothing listens on: every connection is refused at once.
NOWHERE = [f"127.0.0.1:{free_port()}"]


def io_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kafka-io-")]


def fds() -> int:
    gc.collect()  # sockets only in a reference cycle are closed when it is collected
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_failed_bootstraps_leave_no_thread_and_no_descriptor():
    admin = TopicAdmin(timeout_s=0.3)
    before_threads, before_fds = io_threads(), fds()
    # kafka-python logs each failed connection with its exception: records kept by
    # pytest's log capture would keep those sockets alive (whatever level an earlier test
    # left on kafka's loggers), so nothing is logged meanwhile.
    logging.disable(logging.CRITICAL)
    try:
        for _ in range(4):
            with pytest.raises(KafkaUnavailable), admin._client(NOWHERE):
                pass
        for _ in range(2):
            with pytest.raises(KafkaError):
                constructed(
                    KafkaConsumer,
                    bootstrap_servers=NOWHERE,
                    group_id=None,
                    request_timeout_ms=11_000,
                    bootstrap_timeout_ms=300,
                )
    finally:
        logging.disable(logging.NOTSET)
    assert io_threads() == before_threads
    assert fds() <= before_fds + 1  # (the last error's traceback may still hold one socket)
