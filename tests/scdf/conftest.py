"""Session-wide Skipper + Data Flow servers for the SCDF fallback tests (marker `scdf`)."""

import pytest


@pytest.fixture(scope="session")
def scdf_servers():
    from localinfra.scdf import ScdfServers

    with ScdfServers() as servers:
        yield servers


@pytest.fixture(scope="session")
def dataflow_url(scdf_servers):
    return scdf_servers.dataflow_url
