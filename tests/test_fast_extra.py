"""The ``fast`` extra (uvloop, orjson) is used when installed, and the gateway does the same
without it (issue 17): the same log lines, the same SMTP conversation."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from gateway.app import running
from gateway.cli import loop as event_loop
from gateway.observability import logs
from gateway.settings import ConfigError
from tests.conftest import message, settings_for
from tests.support.upstream import Upstream


class Colour(StrEnum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


VALUES: list[Any] = [
    {"msg": "transaction", "n": 1, "f": 1.5, "ok": True, "none": None},
    {"nested": {"list": [1, "two", (3, 4)], "enum": Colour.RED}},
    {"when": datetime(2026, 12, 3, 20, 0, tzinfo=UTC), "point": Point(1), "set": {1}},
    {"unicode": "é 日本 \u2028", "control": "a\x00b\x1f\x7f", "quote": '"\\/'},
    {"floats": [0.1, 1.5, 1234.5, -0.0, 3.0], "ints": [0, -1, 2**63 - 1]},
    {1: "int key", None: "none key"},
    {"surrogate": "bad \udcff byte"},  # surrogateescape'd peer input: orjson refuses it
    {"huge": 2**70},  # beyond orjson's 64 bits
]


@pytest.mark.parametrize("value", VALUES)
def test_orjson_lines_are_the_standard_librarys(value: Any) -> None:
    """With orjson installed, a log line is character for character what json.dumps writes."""
    pytest.importorskip("orjson")
    assert logs.dumps is logs._orjson_dumps
    assert logs._orjson_dumps(value) == logs._json_dumps(value)


def test_tiny_floats_are_written_in_another_notation_of_the_same_value() -> None:
    """The one difference: exponents (orjson 1e-7, json 1e-07); the value read back is equal."""
    pytest.importorskip("orjson")
    value = {"tiny": [1e-7, 2.5e-9], "huge": 1e22}
    assert json.loads(logs._orjson_dumps(value)) == json.loads(logs._json_dumps(value))


def test_the_logs_module_works_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson the module falls back to json.dumps."""
    import importlib

    real_import = builtins.__import__

    def no_orjson(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "orjson":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_orjson)
    fresh = importlib.reload(logs)
    try:
        assert fresh.dumps is fresh._json_dumps
        assert json.loads(fresh.dumps({"a": [1, "é"]})) == {"a": [1, "é"]}
    finally:
        monkeypatch.undo()
        importlib.reload(logs)


def test_the_loop_is_uvloops_when_installed_and_asyncios_on_request() -> None:
    """auto and uvloop take uvloop (installed here); asyncio takes the standard loop."""
    uvloop = pytest.importorskip("uvloop")
    assert event_loop.loop_factory("auto") is uvloop.new_event_loop
    assert event_loop.loop_factory("uvloop") is uvloop.new_event_loop
    assert event_loop.loop_factory("asyncio") is None


def test_without_uvloop_auto_is_asyncio_and_uvloop_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not installed: auto quietly takes asyncio's loop; uvloop says how to install it."""

    def missing(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(event_loop.importlib, "import_module", missing)
    assert event_loop.loop_factory("auto") is None
    with pytest.raises(ConfigError, match=r"suppression-gateway\[fast\]"):
        event_loop.loop_factory("uvloop")


async def _conversation(tmp_path: Path) -> list[str]:
    """Start the gateway and its upstream on the running loop, relay one message."""
    upstream = await Upstream().start()
    try:
        settings = settings_for(tmp_path, upstream.url)
        async with running(settings) as gw:
            host, port = gw.smtp_addresses[0]
            client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10)
            await client.connect()
            errors, reply = await client.sendmail(
                "news@shop.example", ["alice@example.com"], message()
            )
            await client.quit()
            assert errors == {}
            return [reply, type(asyncio.get_running_loop()).__module__]
    finally:
        await upstream.stop()


def test_the_gateway_relays_on_uvloop(tmp_path: Path) -> None:
    """On uvloop's loop the gateway greets, relays and answers as on asyncio's."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        reply, module = runner.run(_conversation(tmp_path))
    assert module.startswith("uvloop")
    assert reply.startswith("2.0.0 Message accepted for delivery")


def test_the_image_lock_pins_the_fast_extra() -> None:
    """deploy/requirements.lock (the container image) has uvloop and orjson, so the image runs
    on uvloop and writes its log lines with orjson."""
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    fast = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lock = (root / "deploy/requirements.lock").read_text()
    for requirement in fast["optional-dependencies"]["fast"]:
        name = re.split(r"[<>=!~; ]", requirement, maxsplit=1)[0]
        assert re.search(rf"^{name}==", lock, re.MULTILINE), name
