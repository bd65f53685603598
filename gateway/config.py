"""Typed configuration: a TOML file, overridden key by key by ``PUSHGATE_*`` environment variables.

Environment names follow the TOML path with ``__`` between levels, for example
``PUSHGATE_SERVER__PORT=9000`` or ``PUSHGATE_DATABASE__URL=postgresql+asyncpg://...``; lists and
tables (``PUSHGATE_API_KEYS``) take JSON. Everything is validated at start-up and a mistake is
reported as :class:`ConfigError` naming the key and how to fix it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from gateway.providers.base import AppProfile
from gateway.providers.registry import PROVIDERS
from policies.permission import PermissionSettings
from policies.settings import (
    BEHAVIORAL_DEFAULT_OPT_IN,
    DEFAULT_FREQUENCY_CAPS,
    DEFAULT_MAX_SCHEDULE_DAYS,
    DEFAULT_QUIET_HOURS,
    DEFAULT_RELEASE_SPREAD_MINUTES,
    DEFAULT_TIER,
    DEFAULT_TIMEZONE,
    DEFAULT_TTL_SECONDS,
    FrequencyCap,
    PolicySettings,
    QuietWindow,
)
from policies.tiers import Tier
from policies.timezones import is_valid_timezone
from tokens.models import Platform

CONFIG_ENV = "PUSHGATE_CONFIG"
SANDBOX_ENV = "PUSHGATE_SANDBOX__ENABLED"
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the fix."""


class Scope(StrEnum):
    """What an API key may do; ``[[api_keys]] scopes`` lists them (``["*"]``: all of them)."""

    SEND = "send"  # send notifications; read and cancel the ones this key sent
    DEVICES = "devices"  # register and remove devices, permission events, the soft ask
    USERS_READ = "users:read"  # read a user's devices, preferences, notifications; the funnel
    PREFERENCES = "preferences"  # change a user's consent and quiet hours
    USERS_DELETE = "users:delete"  # forget a user
    METRICS = "metrics"  # GET /metrics


ALL_SCOPES = "*"


def parse_hhmm(value: object) -> time:
    """Parse ``"HH:MM"`` (24-hour clock) into a :class:`datetime.time`."""
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError(f"expected a 24-hour time as 'HH:MM' (00:00-23:59), got {value!r}")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def validate_timezone_name(value: str) -> str:
    """Accept IANA names only (``Europe/Paris``); fixed offsets such as ``+05:00`` are refused."""
    if not isinstance(value, str) or not is_valid_timezone(value):
        raise ValueError(f"{value!r} is not an IANA time zone name such as 'Europe/Paris'")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_size: int = Field(default=500, ge=1, le=500)


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///./pushgate.db"
    pool_size: int = Field(default=10, ge=1)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use 'sqlite+aiosqlite:///path.db' or 'postgresql+asyncpg://user@host/db'"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class QuietHoursConfig(_Section):
    start: time = DEFAULT_QUIET_HOURS.start
    end: time = DEFAULT_QUIET_HOURS.end

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> time:
        return parse_hhmm(value)


class FrequencyCapConfig(_Section):
    max: int = Field(ge=1)
    window_seconds: int = Field(ge=1)


def _default_ttls() -> dict[Tier, int]:
    return dict(DEFAULT_TTL_SECONDS)


def _default_caps() -> dict[Tier, FrequencyCapConfig]:
    return {
        tier: FrequencyCapConfig(max=cap.max, window_seconds=cap.window_seconds)
        for tier, cap in DEFAULT_FREQUENCY_CAPS.items()
    }


class PolicyConfig(_Section):
    default_timezone: str = DEFAULT_TIMEZONE
    default_tier: Tier = DEFAULT_TIER
    behavioral_default_opt_in: bool = BEHAVIORAL_DEFAULT_OPT_IN
    release_spread_minutes: int = Field(default=DEFAULT_RELEASE_SPREAD_MINUTES, ge=1, le=240)
    quiet_hours: QuietHoursConfig = QuietHoursConfig()
    default_ttl_seconds: dict[Tier, Annotated[int, Field(ge=1)]] = Field(
        default_factory=_default_ttls
    )
    frequency_caps: dict[Tier, FrequencyCapConfig] = Field(default_factory=_default_caps)
    max_schedule_days: int = Field(default=DEFAULT_MAX_SCHEDULE_DAYS, ge=1, le=3650)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return validate_timezone_name(value)

    @field_validator("default_ttl_seconds")
    @classmethod
    def _every_tier_has_ttl(cls, value: dict[Tier, int]) -> dict[Tier, int]:
        return {**_default_ttls(), **value}

    @field_validator("frequency_caps")
    @classmethod
    def _transactional_never_capped(
        cls, value: dict[Tier, FrequencyCapConfig]
    ) -> dict[Tier, FrequencyCapConfig]:
        if Tier.TRANSACTIONAL in value:
            raise ValueError("transactional notifications are never capped; remove that entry")
        return value


class ApiKeyConfig(_Section):
    name: str = Field(min_length=1, max_length=64)
    key_sha256: str | None = None
    key_env: str | None = None
    allowed_tiers: list[Tier] = Field(min_length=1)
    apps: list[str] | None = None
    # Left out, a key may only send: a forgotten line never grants consent or erasure.
    scopes: list[str] = Field(default_factory=lambda: [Scope.SEND.value], min_length=1)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        known = [scope.value for scope in Scope]
        for scope in value:
            if scope != ALL_SCOPES and scope not in known:
                raise ValueError(
                    f'unknown scope {scope!r}; scopes are {", ".join(known)}, or "*" for all'
                )
        if ALL_SCOPES in value and len(value) > 1:
            raise ValueError('"*" already grants every scope; give it alone')
        return value

    @property
    def granted_scopes(self) -> frozenset[Scope]:
        if self.scopes == [ALL_SCOPES]:
            return frozenset(Scope)
        return frozenset(Scope(scope) for scope in self.scopes)

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError(
                "must be the lowercase hex sha256 of the key: printf %s KEY | sha256sum"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError(f"api key {self.name!r}: set exactly one of key_sha256 or key_env")
        return self

    def resolved_sha256(self) -> str:
        """The hex digest to compare against; keys from ``key_env`` are hashed on load."""
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key_env is not None
        secret = os.environ.get(self.key_env)
        if not secret:
            raise ConfigError(
                f"api_keys[{self.name}].key_env: environment variable {self.key_env} is not set"
            )
        return hashlib.sha256(secret.encode()).hexdigest()


class AppConfig(_Section):
    """``[[apps]]``: one app, with a section per provider it delivers through (``[apps.apns]``,
    ``[apps.fcm]``: each provider validates its own)."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    time_sensitive: bool = False
    channels: dict[Tier, str] = Field(default_factory=dict)
    providers: dict[str, SkipValidation[BaseModel]] = Field(default_factory=dict)
    """Each configured provider's section, by provider name; filled from the sections."""

    @model_validator(mode="before")
    @classmethod
    def _provider_sections(cls, data: Any) -> Any:
        """Validate each ``[apps.<provider>]`` section with that provider's own model, keeping
        the section's name in the location of any error (``apps.0.apns.topic``)."""
        if not isinstance(data, dict) or "providers" in data:
            return data
        data = dict(data)
        sections: dict[str, BaseModel] = {}
        for name, provider in PROVIDERS.items():
            section = data.pop(name, None)
            if section is None:
                continue
            try:
                sections[name] = provider.config_model.model_validate(section)
            except ValidationError as exc:
                raise ValidationError.from_exception_data(
                    exc.title,
                    [
                        InitErrorDetails(
                            type=error["type"],
                            loc=(name, *error["loc"]),
                            input=error["input"],
                            ctx=error.get("ctx", {}),
                        )
                        for error in exc.errors()
                    ],
                ) from None
        data["providers"] = sections
        return data

    @property
    def profile(self) -> AppProfile:
        """What a provider needs to know about this app."""
        return AppProfile(id=self.id, time_sensitive=self.time_sensitive, channels=self.channels)

    def provider_config(self, provider: str) -> BaseModel | None:
        """The ``[apps.<provider>]`` section, or None when the app has none."""
        return self.providers.get(provider)


class SandboxConfig(_Section):
    enabled: bool = False


class DeliveryConfig(_Section):
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    send_timeout_seconds: float = Field(default=10.0, gt=0)
    lease_seconds: int = Field(default=60, ge=5)
    concurrency_per_app: int = Field(default=64, ge=1)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    release_batch_size: int = Field(default=500, ge=1)
    breaker_failure_threshold: int = Field(default=20, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)


def _default_stale_days() -> dict[Platform, int]:
    # FCM treats a token unused for 270 days as expired; every platform follows that default
    return dict.fromkeys(Platform, 270)


class TokensConfig(_Section):
    stale_after_days: dict[Platform, Annotated[int, Field(ge=1)]] = Field(
        default_factory=_default_stale_days
    )
    mass_invalidation_window_seconds: int = Field(default=300, ge=10)

    def stale_days_by_platform(self) -> dict[str, int]:
        return {str(platform): days for platform, days in self.stale_after_days.items()}

    mass_invalidation_min_sends: int = Field(default=50, ge=1)
    mass_invalidation_ratio: float = Field(default=0.5, gt=0, le=1)


class RetentionConfig(_Section):
    idempotency_hours: int = Field(default=24, ge=1)
    notifications_days: int = Field(default=30, ge=1)
    invalid_tokens_days: int = Field(default=30, ge=1)


class LoggingConfig(_Section):
    """``[logging]``: how much the gateway says, and in which shape."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


_PERMISSION_DEFAULTS = PermissionSettings()


class PermissionConfig(_Section):
    """``[permission]``: when an app may show its soft ask or its Settings screen (the limits
    themselves are checked by :class:`policies.PermissionSettings`)."""

    decline_cooldown_days: int = _PERMISSION_DEFAULTS.decline_cooldown_days
    max_soft_asks: int = _PERMISSION_DEFAULTS.max_soft_asks
    settings_prompt_cooldown_days: int = _PERMISSION_DEFAULTS.settings_prompt_cooldown_days
    max_settings_prompts: int = _PERMISSION_DEFAULTS.max_settings_prompts

    @model_validator(mode="after")
    def _within_limits(self) -> PermissionConfig:
        self.rules()  # its ValueError names the key
        return self

    def rules(self) -> PermissionSettings:
        """The pure soft-ask rules' view of this section."""
        return PermissionSettings(
            decline_cooldown_days=self.decline_cooldown_days,
            max_soft_asks=self.max_soft_asks,
            settings_prompt_cooldown_days=self.settings_prompt_cooldown_days,
            max_settings_prompts=self.max_settings_prompts,
        )


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PUSHGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    policy: PolicyConfig = PolicyConfig()
    categories: dict[str, Tier] = Field(default_factory=dict)
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    apps: list[AppConfig] = Field(default_factory=list)
    sandbox: SandboxConfig = SandboxConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    tokens: TokensConfig = TokensConfig()
    retention: RetentionConfig = RetentionConfig()
    logging: LoggingConfig = LoggingConfig()
    permission: PermissionConfig = PermissionConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment wins over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        app_ids = [app.id for app in self.apps]
        duplicates = {app_id for app_id in app_ids if app_ids.count(app_id) > 1}
        if duplicates:
            raise ValueError(f"apps: duplicate id {sorted(duplicates)}; each [[apps]] id is unique")
        names = [key.name for key in self.api_keys]
        if len(names) != len(set(names)):
            raise ValueError("api_keys: two keys share a name; names identify callers in logs")
        for key in self.api_keys:
            unknown = set(key.apps or []) - set(app_ids)
            if unknown:
                raise ValueError(
                    f"api_keys[{key.name}].apps names unknown app {sorted(unknown)}; "
                    f"configured apps are {app_ids}"
                )
        if not self.sandbox.enabled:
            sections = " or ".join(f"[apps.{name}]" for name in PROVIDERS)
            from_env = os.environ.get(SANDBOX_ENV)
            source = f" ({SANDBOX_ENV}={from_env} in the environment)" if from_env else ""
            for app in self.apps:
                if not app.providers:
                    raise ValueError(
                        f"apps[{app.id}] has no {sections} section and sandbox.enabled is "
                        f"false{source}: add the app's credentials, or set sandbox.enabled = "
                        "true to deliver to the built-in simulators"
                    )
        return self

    def app(self, app_id: str) -> AppConfig | None:
        return next((app for app in self.apps if app.id == app_id), None)

    def policy_settings(self) -> PolicySettings:
        """The pure policy engine's view of ``[policy]`` and ``[categories]``."""
        policy = self.policy
        return PolicySettings(
            default_timezone=policy.default_timezone,
            quiet_hours=QuietWindow(policy.quiet_hours.start, policy.quiet_hours.end),
            release_spread_minutes=policy.release_spread_minutes,
            behavioral_default_opt_in=policy.behavioral_default_opt_in,
            default_ttl_seconds=dict(policy.default_ttl_seconds),
            frequency_caps={
                tier: FrequencyCap(max=cap.max, window_seconds=cap.window_seconds)
                for tier, cap in policy.frequency_caps.items()
            },
            default_tier=policy.default_tier,
            categories=dict(self.categories),
            max_schedule_days=policy.max_schedule_days,
        )


# sha256 of "pg-demo-key-change-me", the key config.example.toml ships for a laptop
DEMO_KEY_SHA256 = "6f18b2f8790f688fd438b2a329c6121f9e4261025a55bf89db38c014f71efad2"


def listens_on_loopback_only(host: str) -> bool:
    """Whether ``host`` (``server.host``) accepts connections from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def demo_key_exposed(settings: Settings) -> str | None:
    """The name of an API key whose secret is the published demo key while the API listens
    beyond this machine; None when there is none."""
    if listens_on_loopback_only(settings.server.host):
        return None
    for key in settings.api_keys:
        if key.resolved_sha256() == DEMO_KEY_SHA256:
            return key.name
    return None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "value_error" and "error" in item.get("ctx", {}):
            # our validators' own words, without pydantic's "Value error, " in front
            message = str(item["ctx"]["error"])
        elif item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against config.example.toml"
        elif item["type"] == "missing":
            message = "required key is missing; see config.example.toml"
        # checks across sections have no single location: their message names the keys
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML at ``path`` (or ``$PUSHGATE_CONFIG``; built-in defaults when neither is set),
    apply environment overrides, and validate. Raises :class:`ConfigError`.

    Relative file paths inside the file (``key_file``, ``ca_file`` ..., and the SQLite
    database's path in ``database.url``) are resolved against the file's folder, so a config
    works from any working directory. A value from the environment is taken as it is: a
    relative path there is relative to the working directory, as in any shell command.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path is not None:
        config_path = Path(path)
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {config_path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from exc
        _resolve_paths(data, config_path.resolve().parent)
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    for key in settings.api_keys:
        key.resolved_sha256()  # fail at start-up, not at the first request
    return settings


def resolve_sqlite_path(url: str, base: Path) -> str:
    """``url`` with a relative SQLite database path made absolute against ``base``; any other
    URL (PostgreSQL, an absolute path, ``:memory:``) unchanged."""
    if not url.startswith("sqlite"):
        return url
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or Path(database).is_absolute():
        return url
    return parsed.set(database=str((base / database).resolve())).render_as_string(
        hide_password=False
    )


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    database = data.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        database["url"] = resolve_sqlite_path(database["url"], base)
    apps = data.get("apps")
    for app in apps if isinstance(apps, list) else []:
        for name, provider in PROVIDERS.items():
            table = app.get(name) if isinstance(app, dict) else None
            if not isinstance(table, dict):
                continue
            for field in provider.path_fields():
                value = table.get(field)
                if isinstance(value, str) and not Path(value).is_absolute():
                    table[field] = str(base / value)
