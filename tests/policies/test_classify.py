"""Classification by category, explicit tier, or the default."""

import pytest

from policies import Classification, PolicySettings, Tier, TierConflict, classify

SETTINGS = PolicySettings(
    categories={"order_shipped": Tier.TRANSACTIONAL, "cart_reminder": Tier.BEHAVIORAL}
)


@pytest.mark.parametrize(
    ("category", "tier", "expected"),
    [
        ("order_shipped", None, Classification(Tier.TRANSACTIONAL, "category")),
        ("order_shipped", Tier.TRANSACTIONAL, Classification(Tier.TRANSACTIONAL, "category")),
        ("cart_reminder", None, Classification(Tier.BEHAVIORAL, "category")),
        # An unmapped category does not classify: the tier does, else the default.
        ("spring_sale", Tier.BEHAVIORAL, Classification(Tier.BEHAVIORAL, "tier")),
        ("spring_sale", None, Classification(Tier.PROMOTIONAL, "default")),
        (None, Tier.TRANSACTIONAL, Classification(Tier.TRANSACTIONAL, "tier")),
        (None, None, Classification(Tier.PROMOTIONAL, "default")),
    ],
)
def test_classify(category: str | None, tier: Tier | None, expected: Classification) -> None:
    assert classify(category, tier, SETTINGS) == expected


def test_default_tier_is_configurable() -> None:
    settings = PolicySettings(default_tier=Tier.BEHAVIORAL)
    assert classify(None, None, settings) == Classification(Tier.BEHAVIORAL, "default")


def test_a_mapped_category_cannot_be_relabelled() -> None:
    # A promo service calling its cart reminder "transactional" to dodge quiet hours.
    with pytest.raises(TierConflict) as raised:
        classify("cart_reminder", Tier.TRANSACTIONAL, SETTINGS)
    conflict = raised.value
    assert isinstance(conflict, ValueError)
    assert (conflict.category, conflict.category_tier, conflict.requested_tier) == (
        "cart_reminder",
        Tier.BEHAVIORAL,
        Tier.TRANSACTIONAL,
    )
    assert "cart_reminder" in str(conflict)
