"""What a provider said about one send, as a value the pipeline and the registry consume.

Providers (in ``gateway.providers``) turn every response into a :class:`DeliveryReport` through
one classification table per provider; nothing here raises. The pipeline turns the report into a
delivery status, and :mod:`tokens` turns ``TOKEN_DEAD`` reports into token invalidations.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later, honouring retry_after
    TOKEN_DEAD = "token_dead"  # the provider says this token will never work again
    FAILED = "failed"  # permanent for this message, but says nothing about the token


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The classified result of sending one message to one device token.

    ``reason`` is the provider's own reason string (its error code, or a transport description
    such as ``"timeout"``), kept for the record; the registry never interprets it. ``status``
    is the HTTP status when there was a response. ``token_invalid_since`` is the instant the
    provider says the token stopped working, when it says so: a token registered again after
    that instant must not be invalidated. ``misconfiguration`` marks a dead-token answer that,
    for many tokens at once, means our credentials or environment are wrong rather than the
    tokens (the registry's mass-invalidation guard counts these).
    """

    outcome: Outcome
    provider_id: str | None = None
    reason: str | None = None
    status: int | None = None
    retry_after: float | None = None
    token_invalid_since: datetime | None = None
    misconfiguration: bool = False

    @property
    def is_token_dead(self) -> bool:
        return self.outcome is Outcome.TOKEN_DEAD
