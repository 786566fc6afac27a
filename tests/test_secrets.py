"""The generated secrets: created once, never overwritten by a racing replica, and never
silently regenerated for a store that already holds data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import secrets as secrets_file
from gateway.app import running
from gateway.secrets import Secrets, SecretsError
from tests.conftest import Clock, settings_for
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream


def test_creation_never_overwrites(tmp_path: Path) -> None:
    """A second creator (a racing replica) keeps the first file and reads it."""
    path = tmp_path / "secrets.json"
    first = secrets_file.load_or_create(path, store_has_data=False)
    secrets_file.write(path, Secrets(os.urandom(32), {1: os.urandom(64)}), replace=False)
    assert secrets_file.load_or_create(path, store_has_data=False) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "pepper" not in repr(first) and first.pepper.hex() not in repr(first)


async def test_missing_secrets_for_a_populated_store_refuse_to_start(
    tmp_path: Path, upstream: Upstream, clock: Clock
) -> None:
    """Losing the secrets file of a store with data stops the start instead of losing matches."""
    settings = settings_for(tmp_path, upstream.url)
    async with running(settings, clock=clock) as gw:
        await opt_in(gw, "kept@example.com", "newsletter", clock.now)
    secrets_file.default_path(settings.store.url).unlink()
    with pytest.raises(SecretsError, match=r"store\.secrets_file"):
        async with running(settings, clock=clock):
            pass


async def test_restart_keeps_identities(tmp_path: Path, upstream: Upstream, clock: Clock) -> None:
    """After a restart the same address maps to the same identity (the pepper was kept)."""
    settings = settings_for(tmp_path, upstream.url)
    async with running(settings, clock=clock) as gw:
        before = gw.identities.of("same@example.com")
    async with running(settings, clock=clock) as gw:
        assert gw.identities.of("same@example.com") == before


def test_damaged_secrets_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A truncated or tampered secrets file stops the start with one line naming the option."""
    path = tmp_path / "secrets.json"
    secrets_file.write(path, Secrets(os.urandom(32), {1: os.urandom(64)}))
    with pytest.raises(SecretsError, match=r"store\.secrets_file.*32 bytes"):
        secrets_file.read(path)
    path.write_text("{not json")
    with pytest.raises(SecretsError, match=r"store\.secrets_file"):
        secrets_file.read(path)


def test_return_path_keys_new_files_and_old_ones(tmp_path: Path) -> None:
    """A new file holds a random return-path key; a file written before there were any
    derives key 0 from its pepper, the same on every replica, and is not rewritten; neither
    key appears in a repr."""
    fresh = secrets_file.load_or_create(tmp_path / "new.json", store_has_data=False)
    assert list(fresh.return_path_ring()) == [1] and len(fresh.return_path_keys[1]) == 32
    old = tmp_path / "old.json"
    secrets_file.write(old, Secrets(os.urandom(32), {1: os.urandom(32)}))
    before = old.read_bytes()
    assert b"return_path_keys" not in before
    one, two = secrets_file.read(old), secrets_file.read(old)
    assert list(one.return_path_ring()) == [0]
    assert one.return_path_ring() == two.return_path_ring() != fresh.return_path_ring()
    assert one.return_path_ring()[0] != one.pepper and old.read_bytes() == before
    for s in (fresh, one):
        assert all(k.hex() not in repr(s) for k in s.return_path_ring().values())
    bad = tmp_path / "bad.json"
    secrets_file.write(bad, Secrets(os.urandom(32), {1: os.urandom(32)}, {16: os.urandom(32)}))
    with pytest.raises(SecretsError, match="return-path keys"):
        secrets_file.read(bad)
