"""tsp-router: the even/odd timestamp router of the polyglot SCDF pipeline."""

try:
    from importlib.metadata import version as _version

    __version__ = _version("tsp-router")
except Exception:  # noqa: BLE001 - running from a source tree without metadata
    __version__ = "0.0.0"
