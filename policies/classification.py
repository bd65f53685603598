"""Which tier a notification belongs to, and how that was decided."""

from dataclasses import dataclass
from typing import Literal

from policies.settings import PolicySettings
from policies.tiers import Tier

__all__ = ["Classification", "TierConflict", "classify"]


@dataclass(frozen=True, slots=True)
class Classification:
    """The tier a notification gets and what decided it (the response's `classified_by`)."""

    tier: Tier
    classified_by: Literal["category", "tier", "default"]


class TierConflict(ValueError):
    """The caller named a tier that contradicts the tier configured for its category.

    The gateway answers 422 `tier_conflict`; the configured mapping always wins, so a caller
    cannot relabel a mapped promo as transactional to dodge quiet hours.
    """

    def __init__(self, category: str, category_tier: Tier, requested_tier: Tier) -> None:
        super().__init__(
            f"category {category!r} is configured as {category_tier.value}, "
            f"but tier {requested_tier.value} was requested"
        )
        self.category = category
        self.category_tier = category_tier
        self.requested_tier = requested_tier


def classify(category: str | None, tier: Tier | None, settings: PolicySettings) -> Classification:
    """Return the notification's tier: its mapped category, else its `tier`, else the default.

    Raises `TierConflict` when the category is mapped and `tier` names a different tier. A
    category that is not in `settings.categories` is ignored for classification.
    """
    if category is not None:
        category_tier = settings.categories.get(category)
        if category_tier is not None:
            if tier is not None and tier != category_tier:
                raise TierConflict(category, category_tier, tier)
            return Classification(category_tier, "category")
    if tier is not None:
        return Classification(Tier(tier), "tier")
    return Classification(settings.default_tier, "default")
