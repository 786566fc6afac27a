"""The ``fast`` extra (orjson) is used when installed, and the gateway writes the same log lines
without it (issue 17)."""

from __future__ import annotations

import builtins
import dataclasses
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from gateway.observability import logs


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


def test_the_image_lock_pins_the_fast_extra() -> None:
    """deploy/requirements.lock (the container image) has the fast extra: the image writes its
    log lines with orjson."""
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    fast = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lock = (root / "deploy/requirements.lock").read_text()
    for requirement in fast["optional-dependencies"]["fast"]:
        name = re.split(r"[<>=!~; ]", requirement, maxsplit=1)[0]
        assert re.search(rf"^{name}==", lock, re.MULTILINE), name
