import pytest
from localinfra.kafka import KafkaBroker


@pytest.fixture(scope="module")
def sasl_broker():
    """A broker of its own with SASL_PLAINTEXT and SASL_SSL listeners (the session broker has neither)."""
    with KafkaBroker(sasl=True, tls=True) as broker:
        yield broker
