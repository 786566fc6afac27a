"""Small, pure checks of SMTP input for the listener's fast paths (each property-tested against
the slow path it stands in for), and the handler-hook discovery aiosmtpd repeats per
connection."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PLAIN_ANGLE = re.compile(r"<([^\s<>\"\\(),:;@\[\]]+@[^\s<>\"\\(),:;@\[\]]+|)>(.*)", re.DOTALL)


def plain_angle_address(arg: str) -> tuple[str, str] | None:
    """``(address, rest)`` for a plain ``<local@domain> rest`` argument, as aiosmtpd's parser
    would return it (``"<>"`` for the null path); None for any other form (property-tested)."""
    match = _PLAIN_ANGLE.fullmatch(arg.lstrip())
    if match is None:
        return None
    address, rest = match.groups()
    if (
        address.startswith(".")
        or address.endswith(".")
        or ".." in address
        or ".@" in address
        or "@." in address
    ):
        return None  # leave dot-atom edge cases to the full parser
    if not address:  # aiosmtpd keeps the whitespace after a null path
        return "<>", rest
    return address, rest.lstrip()


def has_bare_cr_or_lf(raw: bytes) -> bool:
    """True when a CR is not followed by LF or an LF not preceded by CR (SMTP smuggling).

    Every CR starts a CRLF and every LF ends one exactly when the three counts agree; byte
    counts run at memory speed, where the equivalent regex costs ~90 us per 5 KB message.
    """
    return not raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")


_HOOK_NAMES: dict[tuple[Any, tuple[str, ...]], list[str]] = {}


def hook_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The attribute names of ``cls`` (and its bases) starting with one of ``prefixes``."""
    key = (cls, prefixes)
    if key not in _HOOK_NAMES:  # a memo of class facts, filled once per class
        names = {name for klass in cls.__mro__ for name in vars(klass) if name.startswith(prefixes)}
        _HOOK_NAMES[key] = sorted(names)
    return _HOOK_NAMES[key]


def signed(function: F) -> F:
    """``function`` with its signature computed once: aiosmtpd calls ``inspect.signature`` on
    the EHLO hook for every connection, which finds a ``__signature__`` at once."""
    function.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    return function
