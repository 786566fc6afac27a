"""Typed, validated configuration.

Precedence: ``SGW_<SECTION>_<KEY>`` environment variables > the TOML file > defaults.
A bad value stops the start with one line naming the key (see :class:`ConfigError`).
The key names are a public contract; ``config/gateway.example.toml`` documents every one and a
test keeps it in sync with these models.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from suppression.address import NormalisationRules
from suppression.model import Basis, Category, PolicyMode, Purpose
from suppression.special_use import SPECIAL_USE_NAMES

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ENV_PREFIX = "SGW_"


class ConfigError(Exception):
    """Invalid configuration; ``str()`` is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``:port``; raise ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Label values the metrics reserve for their catch-alls; no client or purpose may use them.
RESERVED_NAMES = frozenset({"other", "anonymous", "none"})


def _not_reserved(value: str) -> str:
    if value.lower() in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved (metrics use it as a catch-all label)")
    return value


class SmtpClient(_Section):
    """One platform allowed to relay: matched by network or by SMTP AUTH. ``name`` is its tenant
    id in policy, metrics and logs."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    networks: list[IPNetwork] = []
    username: str | None = None
    password_hash: SecretStr | None = None
    default_category: Category | None = None
    default_purpose: str | None = None
    #: False when this client's mail never carries X-Gateway-* headers: its defaults are final
    #: at RCPT time, so a blocked recipient gets a per-recipient 550 at RCPT.
    classifying_headers: bool = True
    #: Overrides ``[policy] mode`` for this client (roll out with "monitor").
    policy_mode: PolicyMode | None = None
    #: Messages (transactions with an accepted recipient) and recipients per minute, per
    #: gateway process; past either, RCPT gets ``450 4.7.1`` (:mod:`gateway.rate_limit`).
    messages_per_minute: Annotated[int, Field(ge=1)] | None = None
    recipients_per_minute: Annotated[int, Field(ge=1)] | None = None

    _name = field_validator("name")(classmethod(lambda cls, v: _not_reserved(v)))

    @model_validator(mode="after")
    def _credentials_pair(self) -> SmtpClient:
        if (self.username is None) != (self.password_hash is None):
            raise ValueError("username and password_hash go together")
        return self


class TlsSettingsMixin(_Section):
    tls_cert: Path | None = None
    tls_key: Path | None = None


class SmtpSettings(TlsSettingsMixin):
    """``[smtp]``: the listener platforms connect to."""

    listen: list[str] = ["127.0.0.1:2525"]
    hostname: str = Field(default_factory=socket.getfqdn)
    #: Largest message accepted, octets (advertised as SIZE, capped by the relay's own limit).
    max_message_size: Annotated[int, Field(gt=0)] = 25 * 1024 * 1024
    #: RFC 5321 §4.5.3.1.8: at least 100 must be accepted.
    max_recipients: Annotated[int, Field(ge=1)] = 100
    max_sessions: Annotated[int, Field(ge=1)] = 500
    #: Idle time allowed between commands and inside DATA, seconds (RFC 5321 §4.5.3.2: 5 min).
    command_timeout: Annotated[float, Field(gt=0)] = 300.0
    #: Seconds from the 354 to the final dot, whatever the rate (25 MiB at 44 kB/s).
    data_deadline: Annotated[float, Field(gt=0)] = 600.0
    #: Octets per second a client must average in DATA after ``command_timeout`` of grace
    #: (Postfix's ``smtpd_min_data_rate``); 0: no minimum.
    data_min_rate: Annotated[int, Field(ge=0)] = 500
    #: RFC 5322 §2.1.1: 998 octets plus CRLF.
    max_line_length: Annotated[int, Field(ge=78)] = 998
    #: AUTH failures before the session is closed.
    max_auth_failures: Annotated[int, Field(ge=1)] = 3
    #: Seconds in-flight transactions get after SIGTERM before ``421 4.3.2``; keep it below
    #: the platform's stop timeout (Docker and compose: 10 s, Kubernetes: 30 s).
    shutdown_grace: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Special-use names (RFC 6761: ``test``, ``local``, ...) accepted under envelope senders.
    special_use_sender_domains: list[str] = []
    #: Commands in a row that do not advance a transaction before ``421 4.7.0`` and the close
    #: (Postfix's ``smtpd_junk_command_limit``, counting more commands than its four).
    junk_command_limit: Annotated[int, Field(ge=1)] = 20
    clients: list[SmtpClient] = []

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_hostport(item)
        if not value:
            raise ValueError("at least one listen address is needed")
        return value

    @field_validator("special_use_sender_domains")
    @classmethod
    def _special_use(cls, value: list[str]) -> list[str]:
        names = [item.strip(".").lower() for item in value]
        for name in names:
            if name not in SPECIAL_USE_NAMES:
                known = ", ".join(sorted(SPECIAL_USE_NAMES))
                raise ValueError(f"{name!r} is not a special-use name (one of {known})")
        return names

    @model_validator(mode="after")
    def _consistency(self) -> SmtpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        names = [c.name for c in self.clients]
        if len(set(names)) != len(names):
            raise ValueError("clients: names must be unique")
        public = [a for a in self.listen if not is_loopback_host(parse_hostport(a)[0])]
        for index, client in enumerate(self.clients):
            if client.username and self.tls_cert is None:
                raise ValueError(
                    f"clients[{index}].username: AUTH needs STARTTLS; set smtp.tls_cert/tls_key"
                )
            if public and not client.networks and not client.username:
                raise ValueError(
                    f"clients[{index}]: neither networks nor credentials while listening on "
                    f"{public[0]}; that would be an open relay"
                )
        return self


class StartTls(StrEnum):
    """How the relay client uses STARTTLS."""

    AUTO = "auto"
    REQUIRE = "require"
    OFF = "off"


class RelaySettings(_Section):
    """``[relay]``: the real relay mail is handed to."""

    url: str = "maildir:var/maildir"
    username: str | None = None
    password: SecretStr | None = None
    starttls: StartTls = StartTls.AUTO
    #: Deadline for each upstream read or write, seconds (well below client patience).
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    #: Idle upstream connections kept for reuse.
    pool_size: Annotated[int, Field(ge=0)] = 8
    #: Verify the relay's certificate (turn off only for a relay on loopback with its own CA).
    tls_verify: bool = True
    tls_ca_file: Path | None = None
    #: How long a delivered (Message-ID, recipient) pair is remembered, seconds.
    dedup_window: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    #: Seconds from the final dot within which every copy of a message must be relayed; past it
    #: the client gets 451 4.4.7 and the copies relayed are remembered for its retry. Below the
    #: 100 s a before-queue Postfix waits for its proxy (and RFC 5321 §4.5.3.2.6's 10 minutes).
    message_deadline: Annotated[float, Field(gt=0, le=600)] = 90.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.startswith("maildir:"):
            if not value.removeprefix("maildir:"):
                raise ValueError("maildir: needs a path")
            return value
        scheme, sep, rest = value.partition("://")
        if scheme not in ("smtp", "smtps") or not sep:
            raise ValueError("expected smtp://host:port, smtps://host:port or maildir:PATH")
        parse_hostport(rest.rstrip("/"))
        return value

    @model_validator(mode="after")
    def _credentials_pair(self) -> RelaySettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class AdminScope(StrEnum):
    """What an admin API token may do; a token without ``scopes`` may do everything."""

    CHECK = "check"  # POST /check, GET /purposes
    CONSENTS_WRITE = "consents:write"  # POST /consents
    CONTACTS_READ = "contacts:read"  # GET /contacts/{email}
    CONTACTS_WRITE = "contacts:write"  # PATCH /contacts/{email}
    CONTACTS_ERASE = "contacts:erase"  # DELETE /contacts/{email}
    SUPPRESSIONS_READ = "suppressions:read"  # GET /suppressions
    SUPPRESSIONS_WRITE = "suppressions:write"  # POST /suppressions, DELETE /suppressions/{id}


class AdminToken(_Section):
    """One bearer token of the admin API and what it may do (every scope unless limited)."""

    token: SecretStr
    scopes: Annotated[list[AdminScope], Field(min_length=1)] = list(AdminScope)


class HttpSettings(_Section):
    """``[http]``: health, metrics, unsubscribe pages and the admin API."""

    listen: str = "127.0.0.1:8025"
    #: Base of the links put in List-Unsubscribe (HTTPS in production).
    public_url: str = "http://127.0.0.1:8025"
    #: Plain strings (every scope) or ``{token = "...", scopes = ["contacts:read", ...]}``.
    admin_tokens: list[AdminToken] = []

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _plain_tokens(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"token": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_hostport(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for local testing)")
        return value.rstrip("/")


class StoreSettings(_Section):
    """``[store]``: where consent lives."""

    url: str = "sqlite:///var/suppression.db"
    pool_size: Annotated[int, Field(ge=1)] = 10
    query_timeout: Annotated[float, Field(gt=0)] = 5.0
    #: File holding generated secrets (identity pepper, token keys). Default: beside the store.
    secrets_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://...")
        return value


class PurposeSettings(_Section):
    """``[[policy.purposes]]``: one processing purpose of the catalogue."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    label: str
    description: str = ""
    basis: Literal[Basis.CONSENT, Basis.LEGITIMATE_INTEREST] = Basis.CONSENT
    soft_opt_in: bool = False

    _id = field_validator("id")(classmethod(lambda cls, v: _not_reserved(v)))

    def to_purpose(self) -> Purpose:
        """The domain object."""
        return Purpose(self.id, self.label, self.description, Basis(self.basis), self.soft_opt_in)


class PolicySettings(_Section):
    """``[policy]``: what is allowed."""

    mode: PolicyMode = PolicyMode.ENFORCE
    #: Unclassified mail is marketing unless said otherwise: the safe side of the law.
    default_category: Category = Category.MARKETING
    #: What transactional mail does while the store cannot answer (marketing always tempfails).
    on_store_error: Literal["tempfail", "allow"] = "tempfail"
    purposes: list[PurposeSettings] = []
    #: Domains whose local parts are case-sensitive (not folded).
    case_sensitive_domains: list[str] = []
    #: Domains where ``user+tag`` is the same mailbox as ``user``.
    plus_tag_domains: list[str] = []

    @model_validator(mode="after")
    def _unique(self) -> PolicySettings:
        ids = [p.id for p in self.purposes]
        if len(set(ids)) != len(ids):
            raise ValueError("purposes: ids must be unique")
        return self

    def catalogue(self) -> dict[str, Purpose]:
        """Purposes by id."""
        return {p.id: p.to_purpose() for p in self.purposes}

    def normalisation_rules(self) -> NormalisationRules:
        """How addresses are folded before they are keyed (:mod:`suppression.address`)."""
        return NormalisationRules(
            frozenset(self.case_sensitive_domains), frozenset(self.plus_tag_domains)
        )


class UnsubscribeSettings(_Section):
    """``[unsubscribe]``: List-Unsubscribe injection and the recipient's pages."""

    categories: list[Category] = [Category.MARKETING]
    existing: Literal["replace", "keep"] = "replace"
    #: Domain of the mailto: unsubscribe address; none means no mailto: link.
    mailto_domain: str | None = None
    #: What a one-click POST opts out of: the token's purpose, or all marketing.
    one_click_scope: Literal["purpose", "marketing"] = "purpose"
    token_ttl_days: Annotated[int, Field(ge=30)] = 400
    #: Requests per minute per client IP on /u/.
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 60


class DkimKeySettings(_Section):
    """``[[dkim.keys]]``: a signing key for a From domain."""

    domain: str
    selector: str
    key_file: Path
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"


class DkimSettings(_Section):
    """``[dkim]``."""

    keys: list[DkimKeySettings] = []


class LogSettings(_Section):
    """``[log]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    #: Write addresses in clear in logs (default: keyed hashes only).
    addresses: bool = False


class ServerSettings(_Section):
    """``[server]``: how the process is run."""

    #: Start even on settings that cannot work beyond loopback (see :mod:`gateway.deployment`).
    development: bool = False


class Settings(_Section):
    """The whole configuration."""

    smtp: SmtpSettings = SmtpSettings()
    relay: RelaySettings = RelaySettings()
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    policy: PolicySettings = PolicySettings()
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()
    dkim: DkimSettings = DkimSettings()
    log: LogSettings = LogSettings()
    server: ServerSettings = ServerSettings()

    @model_validator(mode="after")
    def _purposes_known(self) -> Settings:
        known = {p.id for p in self.policy.purposes}
        for index, client in enumerate(self.smtp.clients):
            if client.default_purpose and client.default_purpose not in known:
                raise ValueError(
                    f"smtp.clients[{index}].default_purpose: unknown purpose "
                    f"{client.default_purpose!r}"
                )
        return self


SECTIONS = tuple(Settings.model_fields)


def _env_value(raw: str, annotation: Any) -> Any:
    """Env values are JSON when they parse as such, else strings; lists accept commas."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    if "list" in str(annotation):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``SGW_<SECTION>_<KEY>`` variables on the TOML data; unknown names are errors."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS:
            continue  # SGW_TEST_* and friends belong to others
        fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        if key not in fields:
            raise ConfigError(f"{name}: unknown setting {section}.{key}")
        merged.setdefault(section, {})[key] = _env_value(raw, fields[key].annotation)
    return merged


def _describe(error: ValidationError, env_names: set[str]) -> str:
    first = error.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    env = ENV_PREFIX + "_".join(str(p) for p in first["loc"][:2]).upper()
    origin = f" (from {env})" if env in env_names else ""
    message = first["msg"].removeprefix("Value error, ")
    return f"{path or 'config'}: {message}{origin}" if path else message


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), overlay the environment, validate."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--config: no such file: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    data = apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, set(environ))) from None
