"""Configuration: the shipped files validate, the example documents every option, and bad values
stop the start with one line naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(prefix + name)
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= _keys(candidate, f"{prefix}{name}.")
    return keys


def _toml_keys(data: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, dict):
        for name, value in data.items():
            keys.add(prefix + name)
            keys |= _toml_keys(value, f"{prefix}{name}.")
    elif isinstance(data, list):
        for item in data:
            keys |= _toml_keys(item, prefix)
    return keys


def test_example_documents_every_option() -> None:
    """config/gateway.example.toml names every setting the code knows, and nothing else."""
    example = tomllib.loads((ROOT / "config/gateway.example.toml").read_text())
    assert _toml_keys(example) == _keys(Settings)


@pytest.mark.parametrize("name", ["gateway.toml", "gateway.example.toml"])
def test_shipped_configs_validate(name: str) -> None:
    """Both shipped configuration files load without error."""
    load_settings(ROOT / "config" / name, environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """SGW_<SECTION>_<KEY> beats the TOML file."""
    settings = load_settings(
        ROOT / "config/gateway.toml",
        environ={"SGW_SMTP_MAX_RECIPIENTS": "7", "SGW_SMTP_LISTEN": "127.0.0.1:2600,[::1]:2600"},
    )
    assert settings.smtp.max_recipients == 7
    assert settings.smtp.listen == ["127.0.0.1:2600", "[::1]:2600"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SGW_SMTP_MAX_MESSAGE_SIZE": "big"}, "smtp.max_message_size"),
        ({"SGW_RELAY_URL": "http://relay"}, "relay.url"),
        ({"SGW_SMTP_NOPE": "1"}, "SGW_SMTP_NOPE"),
        ({"SGW_RELAY_STARTTLS": "sometimes"}, "relay.starttls"),
        ({"SGW_STORE_URL": "mysql://x"}, "store.url"),
        (
            {"SGW_SMTP_CLIENTS": '[{"name": "p", "networks": [], "messages_per_minute": 0}]'},
            "smtp.clients.0.messages_per_minute",
        ),
    ],
)
def test_bad_values_name_the_key(environ: dict[str, str], expected: str) -> None:
    """A bad value gives one line that names the option."""
    with pytest.raises(ConfigError) as error:
        load_settings(ROOT / "config/gateway.toml", environ=environ)
    message = str(error.value)
    assert expected in message and "\n" not in message


def test_open_relay_configuration_is_refused() -> None:
    """A public listener with a client that has neither networks nor credentials never starts."""
    with pytest.raises(ConfigError, match="open relay"):
        load_settings(
            None,
            environ={"SGW_SMTP_LISTEN": "0.0.0.0:25", "SGW_SMTP_CLIENTS": '[{"name": "anyone"}]'},
        )


def test_auth_without_tls_is_refused() -> None:
    """A client with credentials needs STARTTLS configured (no AUTH over plaintext)."""
    clients = '[{"name": "p", "username": "u", "password_hash": "scrypt$15$8$1$a$b"}]'
    with pytest.raises(ConfigError, match="STARTTLS"):
        load_settings(None, environ={"SGW_SMTP_CLIENTS": clients})


def test_cli_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    """The command line exits non-zero with a one-line error naming the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[smtp]\nmax_recipients = "many"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert "smtp.max_recipients" in run.stderr


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    """A listener that cannot bind stops the start with one line naming smtp.listen."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gw.toml"
        config.write_text(
            f'[smtp]\nlisten = ["127.0.0.1:{port}"]\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
            f'[relay]\nurl = "maildir:{tmp_path}/md"\n[http]\nlisten = "127.0.0.1:0"\n'
        )
        run = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    (line,) = [ln for ln in run.stderr.splitlines() if ln.startswith("suppression-gateway:")]
    assert f"smtp.listen: cannot listen on 127.0.0.1:{port}" in line


def test_config_check_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    """config check shows what the gateway would run with (file, then environment over it),
    in both forms, and no secret: relay password, admin tokens (plain and scoped), client
    password hashes."""
    secrets = [
        "relay-pass-Zq8",
        "admin-token-plain-Zq8",
        "admin-token-scoped-Zq8",
        "scrypt$15$8$1$c2FsdA==$aGFzaA==",
    ]
    config = tmp_path / "gw.toml"
    config.write_text(
        '[smtp]\nlisten = ["127.0.0.1:2600"]\n'
        'tls_cert = "/etc/cert.pem"\ntls_key = "/etc/key.pem"\n'
        f'[[smtp.clients]]\nname = "p"\nusername = "p"\npassword_hash = "{secrets[3]}"\n'
        f'[relay]\nurl = "smtp://relay:25"\nusername = "gw"\npassword = "{secrets[0]}"\n'
        f'[http]\nadmin_tokens = ["{secrets[1]}", '
        f'{{ token = "{secrets[2]}", scopes = ["contacts:read"] }}]\n'
    )
    env = {**os.environ, "SGW_SMTP_MAX_RECIPIENTS": "7"}
    outputs = {}
    for form in ([], ["--json"]):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "config",
                "check",
                "--config",
                str(config),
                *form,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert run.returncode == 0, run.stderr
        assert not [s for s in secrets if s in run.stdout + run.stderr], form
        outputs[bool(form)] = run.stdout
    data = json.loads(outputs[True])
    assert data["smtp"]["max_recipients"] == 7  # the environment over the file
    assert data["relay"]["password"] == "**********"
    assert data["smtp"]["clients"][0]["password_hash"] == "**********"
    assert [t["token"] for t in data["http"]["admin_tokens"]] == ["**********"] * 2
    assert data["http"]["admin_tokens"][1]["scopes"] == ["contacts:read"]
    assert "max_recipients" in outputs[False] and "**********" in outputs[False]
