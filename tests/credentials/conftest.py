import pytest

from localinfra.kafka import KafkaBroker


@pytest.fixture(scope="module")
def sasl_broker():
    """A broker of its own with a SASL_PLAINTEXT listener (the session broker has none)."""
    with KafkaBroker(sasl=True) as broker:
        yield broker
