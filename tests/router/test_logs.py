"""Log lines: one line per event, text or JSON, on stdout."""

import json
import logging

import pytest

from tsrouter import logs


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_json_and_text_are_one_line_each(capsys, fmt):
    logs.setup("INFO", fmt)
    log = logging.getLogger("tsrouter.test")
    log.info("two\nlines %s", "here")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2
    if fmt == "json":
        first, second = (json.loads(x) for x in out)
        assert first["msg"] == "two\nlines here" and first["level"] == "INFO"
        assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]
    else:
        assert "two | lines here" in out[0] and "ValueError: boom" in out[1]
    logging.getLogger().handlers[:] = []
