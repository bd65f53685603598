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

    ``reason`` is the provider's own reason string (APNs ``reason``, FCM ``errorCode``, or a
    transport description such as ``"timeout"``); ``status`` is the HTTP status when there was
    a response. ``token_invalid_since`` carries APNs's 410 ``timestamp``: a token registered
    again after that instant must not be invalidated.
    """

    outcome: Outcome
    provider_id: str | None = None
    reason: str | None = None
    status: int | None = None
    retry_after: float | None = None
    token_invalid_since: datetime | None = None

    @property
    def is_token_dead(self) -> bool:
        return self.outcome is Outcome.TOKEN_DEAD
