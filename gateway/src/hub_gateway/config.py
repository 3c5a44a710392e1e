"""The gateway's settings: command-line options over GATEWAY_* env vars, strictly checked.

The site's secret is read from GATEWAY_SECRET or from a file (GATEWAY_SECRET_FILE /
--secret-file), never from the command line, where `ps` would show it to every local user.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

WHOAMI_PATH = "/api/v1/gateway/whoami/"
WORKLIST_PATH = "/api/v1/gateway/worklist/"
KEY_PREFIX = "gw_"


class GatewayConfigError(ValueError):
    """A setting is missing or has a value the gateway cannot run with."""


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise GatewayConfigError("must not be empty")
    return value


def _ae_title(value: str) -> str:
    # PS3.5 AE VR: at most 16 characters, no backslash and no control characters.
    title = value.strip()
    if not 1 <= len(title) <= 16:
        raise GatewayConfigError("an AE title has 1 to 16 characters")
    if "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        raise GatewayConfigError("an AE title uses printable ASCII without backslash")
    return title


def _ae_titles(value: str) -> tuple[str, ...]:
    return tuple(_ae_title(title) for title in value.split(",") if title.strip())


def _port(value: str) -> int:
    port = _int(value)
    if not 1 <= port <= 65535:
        raise GatewayConfigError("a TCP port is between 1 and 65535")
    return port


def _int(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise GatewayConfigError(f"{value!r} is not a whole number") from None
    return number


def _positive_int(value: str) -> int:
    number = _int(value)
    if number < 1:
        raise GatewayConfigError("must be at least 1")
    return number


def _non_negative_int(value: str) -> int:
    number = _int(value)
    if number < 0:
        raise GatewayConfigError("must not be negative")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise GatewayConfigError(f"{value!r} is not a number") from None
    if not number > 0 or number != number or number == float("inf"):
        raise GatewayConfigError("must be a positive number of seconds")
    return number


def _url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GatewayConfigError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise GatewayConfigError(
            "put the credential in GATEWAY_KEY_ID / GATEWAY_SECRET, not in the URL"
        )
    return url


def _key_id(value: str) -> str:
    key = _text(value)
    if not key.startswith(KEY_PREFIX):
        raise GatewayConfigError(f"a gateway key id starts with {KEY_PREFIX!r}")
    return key


def _path(value: str) -> Path:
    return Path(_text(value)).expanduser()


@dataclass(frozen=True)
class Setting:
    """One setting: its option, its env var, how it is parsed, and its default."""

    name: str
    option: str
    env: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    flag: bool = False  # a switch: present or GATEWAY_...=1


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ae_title",
        "--ae-title",
        "GATEWAY_AE_TITLE",
        _ae_title,
        "HUB_GATEWAY",
        "this gateway's own AE title (the modalities' called AE)",
    ),
    Setting(
        "called_ae_titles",
        "--called-ae-titles",
        "GATEWAY_CALLED_AE_TITLES",
        _ae_titles,
        None,
        "more AE titles the modalities may call this gateway by, comma-separated "
        "(--ae-title is always accepted; any other called AE title is refused)",
    ),
    Setting(
        "accept_any_called_ae",
        "--accept-any-called-ae",
        "GATEWAY_ACCEPT_ANY_CALLED_AE",
        lambda v: v,
        None,
        "accept associations whatever AE title they call (off: a wrong one is refused)",
        flag=True,
    ),
    Setting(
        "bind_host",
        "--bind",
        "GATEWAY_BIND",
        _text,
        "0.0.0.0",  # noqa: S104 - on purpose
        "address to listen on (the clinic LAN side)",
    ),
    Setting("port", "--port", "GATEWAY_PORT", _port, "11112", "DICOM port to listen on"),
    Setting(
        "spool_dir",
        "--spool",
        "GATEWAY_SPOOL_DIR",
        _path,
        None,
        "spool directory (received instances wait here until the hub confirms them)",
    ),
    Setting(
        "hub_url",
        "--hub-url",
        "GATEWAY_HUB_URL",
        _url,
        None,
        "the hub's STOW-RS URL, e.g. https://hub.example.org/dicomweb/studies",
    ),
    Setting(
        "standby_url",
        "--standby-url",
        "GATEWAY_STANDBY_URL",
        _url,
        None,
        "a standby hub's STOW-RS URL, used after --failover-after failures in a row",
    ),
    Setting(
        "whoami_url",
        "--whoami-url",
        "GATEWAY_WHOAMI_URL",
        _url,
        None,
        f"where to check the credential (default: {WHOAMI_PATH} on the hub's host)",
    ),
    Setting(
        "key_id",
        "--key-id",
        "GATEWAY_KEY_ID",
        _key_id,
        None,
        "the site's gateway credential key id (gw_...)",
    ),
    Setting(
        "secret_file",
        "--secret-file",
        "GATEWAY_SECRET_FILE",
        _path,
        None,
        "file holding the credential's secret (or set GATEWAY_SECRET)",
    ),
    Setting(
        "ca_bundle",
        "--ca-bundle",
        "GATEWAY_CA_BUNDLE",
        _path,
        None,
        "CA bundle to verify the hub's TLS certificate (default: the system's)",
    ),
    Setting(
        "forward_workers",
        "--forward-workers",
        "GATEWAY_FORWARD_WORKERS",
        _positive_int,
        "2",
        "parallel STOW-RS requests to the hub",
    ),
    Setting(
        "batch_files",
        "--batch-files",
        "GATEWAY_BATCH_FILES",
        _positive_int,
        "20",
        "at most this many instances per STOW-RS request",
    ),
    Setting(
        "batch_mb",
        "--batch-mb",
        "GATEWAY_BATCH_MB",
        _positive_int,
        "64",
        "at most this many MB per STOW-RS request (one larger instance goes alone)",
    ),
    Setting(
        "retry_base",
        "--retry-base",
        "GATEWAY_RETRY_BASE",
        _positive_float,
        "1",
        "first retry delay in seconds (doubles per failure, with jitter)",
    ),
    Setting(
        "retry_max",
        "--retry-max",
        "GATEWAY_RETRY_MAX",
        _positive_float,
        "300",
        "longest retry delay in seconds",
    ),
    Setting(
        "failover_after",
        "--failover-after",
        "GATEWAY_FAILOVER_AFTER",
        _positive_int,
        "3",
        "failed requests in a row before switching to the other hub URL",
    ),
    Setting(
        "failback_after",
        "--failback-after",
        "GATEWAY_FAILBACK_AFTER",
        _positive_float,
        "300",
        "seconds on the standby before trying the primary again",
    ),
    Setting(
        "timeout",
        "--timeout",
        "GATEWAY_TIMEOUT",
        _positive_float,
        "120",
        "seconds to wait for the hub's answer to one request",
    ),
    Setting(
        "max_associations",
        "--max-associations",
        "GATEWAY_MAX_ASSOCIATIONS",
        _positive_int,
        "16",
        "simultaneous DICOM associations accepted",
    ),
    Setting(
        "min_free_mb",
        "--min-free-mb",
        "GATEWAY_MIN_FREE_MB",
        _non_negative_int,
        "512",
        "refuse instances (0xA700) when the spool's disk has less free space than this",
    ),
    Setting(
        "identity_refresh",
        "--identity-refresh",
        "GATEWAY_IDENTITY_REFRESH",
        _positive_float,
        "300",
        "seconds between re-reading the accepted AE titles",
    ),
    Setting(
        "worklist_url",
        "--worklist-url",
        "GATEWAY_WORKLIST_URL",
        _url,
        None,
        f"where to fetch the site's Modality Worklist (default: {WORKLIST_PATH} on the hub's host)",
    ),
    Setting(
        "worklist_refresh",
        "--worklist-refresh",
        "GATEWAY_WORKLIST_REFRESH",
        _positive_float,
        "30",
        "seconds between fetches of the Modality Worklist (served from the last copy meanwhile)",
    ),
    Setting(
        "forward_only",
        "--forward-only",
        "GATEWAY_FORWARD_ONLY",
        lambda v: v,
        None,
        "do not listen for DICOM; only forward what is already spooled",
        flag=True,
    ),
)


@dataclass(frozen=True)
class GatewayConfig:
    ae_title: str
    bind_host: str
    port: int
    spool_dir: Path
    hub_url: str
    standby_url: str | None
    whoami_urls: tuple[str, ...]
    key_id: str
    secret: str = field(repr=False)
    ca_bundle: Path | None
    forward_workers: int
    batch_files: int
    batch_bytes: int
    retry_base: float
    retry_max: float
    failover_after: int
    failback_after: float
    timeout: float
    max_associations: int
    min_free_bytes: int
    identity_refresh: float
    worklist_urls: tuple[str, ...] = ()
    worklist_refresh: float = 30.0
    forward_only: bool = False
    warnings: tuple[str, ...] = ()
    called_ae_titles: tuple[str, ...] = ()
    accept_any_called_ae: bool = False

    @property
    def hub_urls(self) -> tuple[str, ...]:
        return (self.hub_url, self.standby_url) if self.standby_url else (self.hub_url,)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: Any, env_value: str | None, env_name: str) -> bool:
    if value:
        return True
    if env_value is None:
        return False
    lowered = env_value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise GatewayConfigError(f"{env_name}: {env_value!r} is not a yes/no value")


def _read_secret(values: dict[str, Any], environ: Mapping[str, str], warnings: list[str]) -> str:
    from_env = environ.get("GATEWAY_SECRET")
    path: Path | None = values.get("secret_file")
    if from_env and path:
        raise GatewayConfigError("set GATEWAY_SECRET or a secret file, not both")
    if path is not None:
        try:
            mode = path.stat().st_mode
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GatewayConfigError(f"secret file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"secret file {path} is readable by others; chmod 600 it")
    else:
        secret = (from_env or "").strip()
    if not secret:
        raise GatewayConfigError(
            "the site's gateway secret is missing: set GATEWAY_SECRET or --secret-file"
        )
    return secret


def load_config(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Merge options (None = not given) over env vars over defaults, checking each value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        given = options.get(setting.name)
        if setting.flag:
            values[setting.name] = _flag(given, environ.get(setting.env), setting.env)
            continue
        raw = given if given not in (None, "") else environ.get(setting.env) or setting.default
        if raw is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(str(raw))
        except GatewayConfigError as exc:
            raise GatewayConfigError(f"{setting.option} / {setting.env}: {exc}") from None
    for required in ("spool_dir", "hub_url", "key_id"):
        if values[required] is None:
            setting = next(s for s in SETTINGS if s.name == required)
            raise GatewayConfigError(f"{setting.option} / {setting.env} is required")
    if values["retry_max"] < values["retry_base"]:
        raise GatewayConfigError("--retry-max must not be shorter than --retry-base")
    if values["standby_url"] == values["hub_url"]:
        raise GatewayConfigError("the standby URL is the primary URL")
    warnings: list[str] = []
    secret = _read_secret(values, environ, warnings)
    if values["whoami_url"]:
        whoami: tuple[str, ...] = (values["whoami_url"],)
    else:
        hubs = [values["hub_url"]] + ([values["standby_url"]] if values["standby_url"] else [])
        whoami = tuple(urljoin(url, WHOAMI_PATH) for url in hubs)
    if values["worklist_url"]:
        worklist: tuple[str, ...] = (values["worklist_url"],)
    else:
        hubs = [values["hub_url"]] + ([values["standby_url"]] if values["standby_url"] else [])
        worklist = tuple(urljoin(url, WORKLIST_PATH) for url in hubs)
    for url in [values["hub_url"], values["standby_url"]]:
        if (
            url
            and url.startswith("http://")
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
        ):
            warnings.append(
                f"{url} is plain HTTP: images and the secret cross the network "
                "unencrypted; use https"
            )
    return GatewayConfig(
        ae_title=values["ae_title"],
        bind_host=values["bind_host"],
        port=values["port"],
        spool_dir=values["spool_dir"],
        hub_url=values["hub_url"],
        standby_url=values["standby_url"],
        whoami_urls=whoami,
        key_id=values["key_id"],
        secret=secret,
        ca_bundle=values["ca_bundle"],
        forward_workers=values["forward_workers"],
        batch_files=values["batch_files"],
        batch_bytes=values["batch_mb"] * 1024 * 1024,
        retry_base=values["retry_base"],
        retry_max=values["retry_max"],
        failover_after=values["failover_after"],
        failback_after=values["failback_after"],
        timeout=values["timeout"],
        max_associations=values["max_associations"],
        min_free_bytes=values["min_free_mb"] * 1024 * 1024,
        identity_refresh=values["identity_refresh"],
        worklist_urls=worklist,
        worklist_refresh=values["worklist_refresh"],
        forward_only=values["forward_only"],
        warnings=tuple(warnings),
        called_ae_titles=values["called_ae_titles"] or (),
        accept_any_called_ae=values["accept_any_called_ae"],
    )
