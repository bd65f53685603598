"""What a push provider is to the rest of the gateway: one message in, one report out.

A provider is a class (:class:`PushProvider`) that owns everything about its service:

- its configuration section (``[apps.<name>]``) as a pydantic model, :attr:`config_model`;
- which devices it serves (:attr:`platform`) and what their tokens look like
  (:meth:`~PushProvider.validate_token`);
- what a notification must look like to be deliverable (:meth:`~PushProvider.check_payload`,
  run when a notification is accepted, so a caller hears about it in its 4xx);
- building requests and classifying every answer into a
  :class:`tokens.reports.DeliveryReport` through one table (the pipeline never sees a library
  exception or a provider's reason string);
- its simulator, used in sandbox mode and by the tests.

:mod:`gateway.providers.registry` maps names to these classes; nothing else in the gateway
names a provider.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from policies.tiers import Tier
from tokens.models import Environment, Platform
from tokens.reports import DeliveryReport


@dataclass(frozen=True, slots=True)
class AppProfile:
    """What a provider needs to know about the app it sends for, besides its credentials."""

    id: str
    time_sensitive: bool = False
    """Transactional notifications may break through Focus (APNs ``time-sensitive``)."""
    channels: Mapping[Tier, str] = field(default_factory=dict)
    """Android notification channel per tier."""


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One notification addressed to one device token, provider-neutral."""

    token: str
    tier: Tier
    expires_at: datetime
    environment: Environment = Environment.PRODUCTION
    title: str | None = None
    body: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    badge: int | None = None
    sound: str | None = None
    thread_id: str | None = None
    collapse_key: str | None = None
    notification_id: str | None = None  # for logs and the APNs apns-id

    @property
    def is_data_only(self) -> bool:
        return self.title is None and self.body is None


class PayloadRejected(ValueError):
    """A notification that the provider would refuse however often it were sent.

    ``too_large`` tells a payload over the provider's size limit (413) from a malformed one
    (422); ``field`` names the offending request field when there is one.
    """

    def __init__(self, message: str, *, too_large: bool = False, field: str | None = None) -> None:
        super().__init__(message)
        self.too_large = too_large
        self.field = field


class Provider(Protocol):
    """Sends messages for one configured app on one platform: what the delivery worker calls."""

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        """Send each message; return one report per message, in order. Never raises for a
        provider or transport error: those are reports."""
        ...

    async def close(self) -> None: ...


class Simulator(Protocol):
    """A local stand-in for a provider's service, speaking its real wire protocol."""

    async def __aenter__(self) -> Simulator: ...

    async def __aexit__(self, *exc: object) -> None: ...


class PushProvider(abc.ABC):
    """Base of every provider class; one instance sends for one app (see the module text)."""

    name: ClassVar[str]
    """The config section (``[apps.<name>]``) and the ``provider`` label of metrics."""
    platform: ClassVar[Platform]
    """The devices this provider delivers to."""
    config_model: ClassVar[type[BaseModel]]
    """The model of the ``[apps.<name>]`` section."""

    @abc.abstractmethod
    def __init__(self, app: AppProfile, config: Any, *, send_timeout_seconds: float) -> None:
        """A provider sending for ``app`` with its ``config`` section (a :attr:`config_model`);
        each send gives up after ``send_timeout_seconds``."""

    @classmethod
    @abc.abstractmethod
    def validate_token(cls, token: str) -> None:
        """Raise ``ValueError`` (its message says what a token looks like) unless ``token``
        could be a device token of this provider."""

    @classmethod
    @abc.abstractmethod
    def check_payload(cls, message: PushMessage, app: AppProfile) -> None:
        """Raise :class:`PayloadRejected` when no device of this provider could receive
        ``message`` (reserved keys, over the size limit)."""

    @classmethod
    def default_environment(cls, config: BaseModel | None) -> Environment:
        """The environment a device registered without one gets (APNs has two)."""
        return Environment.PRODUCTION

    @classmethod
    @abc.abstractmethod
    def simulator(cls) -> AbstractAsyncContextManager[Any]:
        """A fresh simulator of this provider's service on loopback (sandbox mode, tests)."""

    @classmethod
    @abc.abstractmethod
    def sandbox_config(cls, simulator: Any, app_id: str, folder: Path) -> BaseModel:
        """This provider's config section pointing ``app_id`` at a running ``simulator``;
        ``folder`` takes any credential files it needs."""

    @classmethod
    def path_fields(cls) -> list[str]:
        """The config fields that hold file paths (resolved against the config file's folder)."""
        return [
            name
            for name, info in cls.config_model.model_fields.items()
            if info.annotation in (Path, Path | None)
        ]

    @abc.abstractmethod
    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        """See :meth:`Provider.send`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections; the provider may be used again afterwards (it reconnects)."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (default: the current time).

    Either delta-seconds or an HTTP-date; an HTTP-date is always in GMT (RFC 9110), so one
    without a zone is read as UTC. ``None`` when absent or unreadable; never negative. The
    caller bounds it: a provider may send anything here.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
