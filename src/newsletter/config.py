"""Workspace and configuration: `newsletter.toml` plus the environment.

The workspace is the folder holding `newsletter.toml` (the repository root in
the usual set-up); every other path is derived from it here, so that no module
guesses where `issues/`, `subscribers/` or the state database live.  Secrets
come only from the environment and are never part of :class:`Config`, so they
cannot end up in a log line that prints the configuration.

Nothing here knows a provider: ``[send]`` holds what every backend understands, and a
provider's own settings live in its own table (``[sendgrid]``), whose model
(a :class:`ProviderSettings`) is declared beside the backend in ``esp/`` and found
through :mod:`newsletter.esp.registry`.  Keys that used to sit in ``[send]`` and now
belong to a provider (the SendGrid group settings ...) are still read, with a one-time
warning naming their new place.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from .errors import ConfigError, format_path
from .esp.settings import ProviderSettings
from .picture_src import PictureSrc
from .signup_settings import Signup

CONFIG_FILE = "newsletter.toml"
WORKSPACE_ENV = "NEWSLETTER_WORKSPACE"
SECRET_ENV = "NEWSLETTER_SECRET"
WEBHOOK_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"

HexColour = str


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(_Section):
    name: str = Field(min_length=1)
    postal_address: str = Field(min_length=1)
    website: HttpUrl
    logo_url: PictureSrc | None = None  # an https address, or a file beside newsletter.toml
    logo_width: int = Field(default=160, ge=16, le=600)


class Sender(_Section):
    from_email: str = Field(min_length=3)
    from_name: str = Field(min_length=1)
    reply_to: str | None = None


class Brand(_Section):
    primary: HexColour = "#0b5394"
    accent: HexColour = "#b45309"
    text: HexColour = "#1f2933"
    muted: HexColour = "#52606d"
    background: HexColour = "#f3f4f6"
    surface: HexColour = "#ffffff"
    font_family: str = "Helvetica, Arial, sans-serif"

    @field_validator("primary", "accent", "text", "muted", "background", "surface")
    @classmethod
    def _hex(cls, value: str) -> str:
        v = value.strip()
        if not (
            v.startswith("#") and len(v) == 7 and all(c in "0123456789abcdefABCDEF" for c in v[1:])
        ):
            raise ValueError("must be a colour like #0b5394")
        return v.lower()


class SocialLink(_Section):
    name: str = Field(min_length=1)
    url: HttpUrl


class Archive(_Section):
    base_url: HttpUrl
    title: str | None = None


class Send(_Section):
    """What every backend understands.  Provider settings go in the provider's own table."""

    backend: str = Field(default="auto", description="auto, or a name from esp/registry.py")
    batch_size: int | None = Field(
        default=None, ge=1, description="recipients per request; default: the backend's most"
    )
    rate: float | None = Field(default=None, gt=0, description="requests per second, at most")
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    backoff_base: float = Field(default=1.0, ge=0, description="first retry wait, seconds")
    backoff_max: float = Field(default=60.0, ge=0, description="longest retry wait, seconds")
    pause_after_failures: int = Field(default=5, ge=1)
    # Tracking stays here, not in a provider's table: every provider we would add has
    # both switches, and `newsletter check` needs click_tracking whatever the backend
    # (tracked links make the HTML larger, which Gmail clips).
    open_tracking: bool = True
    click_tracking: bool = True
    unsubscribe_url: HttpUrl = Field(
        description="public base URL of `newsletter serve`; the one-click link is <this>/u/<token>"
    )
    unsubscribe_mailto: str | None = None
    timezone: str | None = Field(
        default=None,
        description="time zone of a --send-at without one, e.g. America/Costa_Rica",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        zone_info(value)  # ValueError with the words to show
        return value.strip()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from .esp.registry import BACKENDS

        if value != "auto" and value not in BACKENDS:
            raise ValueError(f"must be one of auto, {', '.join(BACKENDS)}")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _one_click_needs_https(cls, value: HttpUrl) -> HttpUrl:
        # RFC 8058 one-click, and Gmail's and Yahoo's bulk-sender rules, require https.
        if value.scheme != "https" and value.host not in ("localhost", "127.0.0.1", "[::1]"):
            raise ValueError("must be an https:// address (one-click unsubscribe requires https)")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _plain_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        address = value.strip().removeprefix("mailto:").strip()
        local, _, domain = address.partition("@")
        if not local or "." not in domain or any(c in address for c in " <>,;?"):
            raise ValueError("must be an email address such as unsubscribe@example.org")
        return address


def zone_info(name: str) -> ZoneInfo:
    """The time zone named by an IANA name such as America/Costa_Rica (a ZoneInfo), or
    ValueError in words a person can act on.  Used by `send.timezone` and --timezone."""
    text = name.strip()
    try:
        if not text or text.startswith(("/", ".")) or ".." in text:
            raise ValueError(text)
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{name!r} is not a time zone name; use one such as America/Costa_Rica, "
            "America/Mexico_City, Europe/Madrid or UTC"
        ) from None


class Server(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    request_timeout: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="seconds a client has to send a request's headers, and again its body",
    )
    max_connections: int = Field(
        default=100, ge=1, le=10_000, description="open connections at most; more get 503"
    )


P = TypeVar("P", bound=ProviderSettings)


class Config(_Section):
    language: str = Field(default="en", min_length=2, max_length=8)
    theme: str = "default"
    organisation: Organisation
    sender: Sender
    brand: Brand = Brand()
    social: list[SocialLink] = Field(default_factory=list)
    archive: Archive
    send: Send
    server: Server = Server()
    signup: Signup | None = None  # sign-up form and preferences: signup_settings.py
    # Provider tables, validated by their own models: see load_config.
    _providers: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)

    def provider(self, model: type[P]) -> P:
        """A provider's settings: its table as written, else its defaults."""
        found = self._providers.get(model.table)
        return found if isinstance(found, model) else model()

    @property
    def provider_tables(self) -> dict[str, ProviderSettings]:
        """The provider tables the file has (directly or through old [send] keys)."""
        return dict(self._providers)


def load_config(path: Path) -> Config:
    """Read and validate `newsletter.toml`; every error names the key to fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found",
            key=CONFIG_FILE,
            hint=f"run newsletter from the folder that holds {CONFIG_FILE}, or set {WORKSPACE_ENV}",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", key=CONFIG_FILE) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: {exc}", key=CONFIG_FILE, hint=_toml_hint(raw.decode("utf-8"), str(exc))
        ) from None
    tables = _provider_tables(data, path)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(path, exc) from None
    providers: dict[str, ProviderSettings] = {}
    for model, values, origin in tables:
        try:
            providers[model.table] = model.model_validate(values)
        except ValidationError as exc:
            raise _config_error(path, exc, origin) from None
    config._providers = providers
    return config


def _toml_hint(text: str, message: str) -> str:
    """What to do about a TOML syntax error, in the words of the commonest mistakes: a
    value without quotes (a colour such as #0b5394 reads as a comment there)."""
    found = re.search(r"line (\d+)", message)
    if found:
        lines = text.splitlines()
        number = int(found.group(1))
        line = lines[number - 1] if 0 < number <= len(lines) else ""
        key, eq, value = line.partition("=")
        value = value.strip()
        if eq and value and not value.startswith(('"', "'", "[", "{")):
            shown = value.split("#")[0].strip() if not value.startswith("#") else value
            shown = shown.split()[0] if shown else value
            if not re.fullmatch(r"-?\d+(\.\d+)?|true|false", shown):
                return (
                    f'put the text in double quotes: {key.strip()} = "{shown}" '
                    "(without quotes, a # starts a comment and words are not read)"
                )
    return "see the README for the format (text values go in double quotes)"


def _config_error(
    path: Path, exc: ValidationError, origin: dict[str, str] | None = None
) -> ConfigError:
    """The first error, named as the file names it (``origin``: a provider key -> its table)."""
    err = exc.errors()[0]
    loc = err["loc"]
    if origin is not None:
        first = str(loc[0]) if loc else ""
        loc = (origin.get(first, ""), *loc) if origin.get(first) else loc
    key = format_path(loc)
    msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's words, not ours
    if err["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif err["type"] == "missing":
        msg = "required setting is missing"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if msg.startswith("must "):  # our validators' words read as a sentence
        return ConfigError(f"{path}: {key} {msg}{more}", key=key)
    return ConfigError(f"{path}: setting `{key}`: {msg}{more}", key=key)


_warned: set[str] = set()  # old [send] keys already warned about in this process


def _provider_tables(
    data: dict[str, Any], path: Path
) -> list[tuple[type[ProviderSettings], dict[str, Any], dict[str, str]]]:
    """Take the provider tables (and the provider keys of an older [send]) out of ``data``.

    Returns (model, values, origin) per provider, origin telling for each key which table
    it was written in, so an error names the key where the user wrote it.  A backend's
    module is imported only if the file has its table, or [send] has a key [send] does
    not know (which may be one a provider took over).
    """
    from .esp.registry import BACKENDS, settings_models

    send = data["send"] if isinstance(data.get("send"), dict) else {}
    present = [name for name in BACKENDS if name in data]
    strangers = [key for key in send if key not in Send.model_fields]
    if not present and not strangers:
        return []
    out = []
    moved: list[tuple[str, str]] = []  # (table, key)
    for model in settings_models(only=None if strangers else present):
        raw = data.get(model.table)
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: `{model.table}` must be a table ([{model.table}])", key=model.table
            )
        values: dict[str, Any] = dict(raw or {})
        origin = dict.fromkeys(values, model.table)
        for key in model.moved_from_send:
            if key not in send:
                continue
            if key in values:
                raise ConfigError(
                    f"{path}: `send.{key}` is also set as `{model.table}.{key}`",
                    key=f"send.{key}",
                    hint=f"`{key}` belongs in [{model.table}] now; delete it from [send]",
                )
            values[key] = send.pop(key)
            origin[key] = "send"
            moved.append((model.table, key))
        data.pop(model.table, None)
        if values or raw is not None:
            out.append((model, values, origin))
    _warn_moved(path, moved)
    return out


def _warn_moved(path: Path, moved: list[tuple[str, str]]) -> None:
    """One line on stderr per table, once per process (a server reloads its config)."""
    for table in dict.fromkeys(t for t, _ in moved):
        keys = [k for t, k in moved if t == table and f"{t}.{k}" not in _warned]
        if not keys:
            continue
        _warned.update(f"{table}.{k}" for k in keys)
        old = ", ".join(f"`send.{k}`" for k in keys)
        print(
            f"warning: {path}: {old} {'has' if len(keys) == 1 else 'have'} moved to the "
            f"[{table}] table; still read from [send] for now, but move "
            f"{'it' if len(keys) == 1 else 'them'} under [{table}] (the old place will "
            "stop working in a later version)",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class Workspace:
    """A folder with `newsletter.toml`; knows where everything else lives."""

    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace:
        env = os.environ.get(WORKSPACE_ENV)
        if env:
            root = Path(env).resolve()
            if not (root / CONFIG_FILE).is_file():
                raise ConfigError(
                    f"{WORKSPACE_ENV}={env}: no {CONFIG_FILE} there", key=WORKSPACE_ENV
                )
            return cls(root)
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                return cls(folder)
        raise ConfigError(
            f"no {CONFIG_FILE} in {here} or any folder above it",
            key=CONFIG_FILE,
            hint=f"run newsletter inside the newsletter repository, or set {WORKSPACE_ENV}",
        )

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"

    @property
    def suppressions_path(self) -> Path:
        return self.subscribers_dir / "suppressions.csv"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def theme_dir(self) -> Path:
        return self.templates_dir / self.config.theme

    @property
    def pages_dir(self) -> Path:
        """Web pages (preview, archive index, unsubscribe), Jinja2 templates."""
        return self.templates_dir / "pages"

    @property
    def state_dir(self) -> Path:
        return self.root / ".newsletter"

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def tmp_dir(self) -> Path:
        """Temporary files (an import's copy of a list), on the workspace's file system."""
        return self.state_dir / "tmp"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"


def env_secret(name: str, *, required: bool = True, header: bool = False) -> str | None:
    """Read a secret from the environment; a missing one is a ConfigError naming the variable.

    ``header``: the secret travels in an HTTP header (an API key), so it must be
    printable ASCII without spaces.  A pasted key often carries a line break or a
    typographic character; caught here, it is a clear message before anything is
    posted, instead of a request that breaks half-way (or a header injected).  The
    value itself is never shown, only where the fault is.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        if required:
            raise ConfigError(
                f"environment variable {name} is not set",
                key=name,
                hint=f"export {name}=... (secrets never go in {CONFIG_FILE} or in git)",
            )
        return None
    if header:
        for position, char in enumerate(value, 1):
            if not ("!" <= char <= "~"):
                what = (
                    "a line break"
                    if char in "\r\n\u2028\u2029\x85"
                    else "a space or control character"
                    if char.isspace() or not char.isprintable()
                    else f"a non-ASCII character (U+{ord(char):04X})"
                )
                raise ConfigError(
                    f"environment variable {name} contains {what} at position {position} "
                    f"of {len(value)}; an API key is plain letters, digits and punctuation",
                    key=name,
                    hint=f"copy the key again from the provider's site and set {name} anew",
                )
    return value


def newsletter_secrets() -> list[bytes]:
    """The HMAC keys for unsubscribe tokens: NEWSLETTER_SECRET, comma-separated, newest first.

    Several keys let the secret be rotated: new tokens use the first key, and
    links in issues already sent keep working while the old key stays listed.
    """
    raw = env_secret(SECRET_ENV)
    assert raw is not None
    keys = [k.strip().encode("utf-8") for k in raw.split(",") if k.strip()]
    if any(len(k) < 16 for k in keys):
        raise ConfigError(
            f"{SECRET_ENV}: every key must be at least 16 characters",
            key=SECRET_ENV,
            hint="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return keys
