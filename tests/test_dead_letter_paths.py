"""The dead letter channel's own paths: sent one way, never into itself, and the file names it
may be given (see the rules in eip/processors/error_handler.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eip import Context
from eip import headers as H
from eip.errors import EndpointError


# -- file names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "name", "source"),
    [
        ("file:{dir}", "evt\x00.json", "the eip.file.name header"),
        ("file:{dir}?file_name={{stem}}.bak", "evt\x00.json", "file_name option '{stem}.bak'"),
        ("file:{dir}", "../evt.json", "the eip.file.name header"),
    ],
)
async def test_the_file_producer_refuses_nul_and_traversal_naming_the_source(
    eip_context: Context, tmp_path: Path, uri: str, name: str, source: str
) -> None:
    await eip_context.start()
    target = uri.format(dir=tmp_path / "out")
    exchange = await eip_context.template().send(target, b"{}", {H.FILE_NAME: name})
    assert isinstance(exchange.exception, EndpointError)
    assert "refusing file name" in str(exchange.exception)
    assert source in str(exchange.exception)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
