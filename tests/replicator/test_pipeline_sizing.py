"""Sizing a follower's copy (each strategy, lot rounding, caps, skips), the deterministic tag, and
the reading of accepted_at."""

from datetime import UTC
from decimal import Decimal

import pytest

from services.replicator.pipeline.replication import parse_time
from services.replicator.pipeline.sizing import (
    FIXED_QUANTITY,
    FIXED_RATIO,
    INSUFFICIENT_FUNDS,
    NO_PRICE,
    PERCENTAGE,
    SIZED_TO_ZERO,
    Contract,
    MasterOrder,
    Strategy,
    order_price,
    size,
)
from services.replicator.pipeline.store import tag_for

D = Decimal
EQUITY = Contract(lot_size=1, freeze_quantity=None, reference_price=D("1412.30"))
NIFTY = Contract(lot_size=65, freeze_quantity=1755, reference_price=D("24000"))
RICH = D("100000000")


def market(quantity, side="BUY"):
    return MasterOrder(side=side, order_type="MARKET", quantity=quantity, price=None, trigger_price=None)


def limit(quantity, price, side="BUY"):
    return MasterOrder(side=side, order_type="LIMIT", quantity=quantity, price=D(price), trigger_price=None)


@pytest.mark.parametrize(
    ("ratio", "master_qty", "expected"),
    [("1", 10, 10), ("0.5", 10, 5), ("0.5", 7, 3), ("2.5", 3, 7), ("0.1", 5, 0)],
)
def test_fixed_ratio_rounds_down(ratio, master_qty, expected):
    sized = size(market(master_qty), Strategy(FIXED_RATIO, ratio=D(ratio)), EQUITY, RICH)
    assert sized.quantity == expected
    assert sized.skip_code == ("" if expected else SIZED_TO_ZERO)


def test_fixed_ratio_rounds_down_to_whole_lots():
    # 3 lots x 0.5 = 97.5 units: one lot of 65, never an off-lot 97.
    sized = size(market(195), Strategy(FIXED_RATIO, ratio=D("0.5")), NIFTY, RICH)
    assert sized.quantity == 65


def test_fixed_quantity_ignores_the_masters_quantity():
    assert size(market(1), Strategy(FIXED_QUANTITY, fixed_quantity=12), EQUITY, RICH).quantity == 12
    assert size(market(65), Strategy(FIXED_QUANTITY, fixed_quantity=100), NIFTY, RICH).quantity == 65
    assert (
        size(market(65), Strategy(FIXED_QUANTITY, fixed_quantity=64), NIFTY, RICH).skip_code == SIZED_TO_ZERO
    )


def test_percentage_of_capital_at_the_limit_price():
    # 10% of ₹10,000 = ₹1,000 at ₹300 = 3.33 -> 3 units.
    sized = size(limit(50, "300.00"), Strategy(PERCENTAGE, percentage=D("10")), EQUITY, D("10000"))
    assert sized.quantity == 3 and not sized.skipped


def test_percentage_for_market_uses_the_reference_price():
    # 50% of ₹10,000 at the reference ₹1,412.30 = 3.54 -> 3 units.
    sized = size(market(50), Strategy(PERCENTAGE, percentage=D("50")), EQUITY, D("10000"))
    assert sized.quantity == 3


def test_percentage_sl_m_uses_the_trigger_price():
    order = MasterOrder(side="SELL", order_type="SL-M", quantity=5, price=None, trigger_price=D("500"))
    assert order_price(order, EQUITY) == D("500")
    assert size(order, Strategy(PERCENTAGE, percentage=D("10")), EQUITY, D("10000")).quantity == 2


def test_percentage_without_any_price_is_skipped():
    no_price = Contract(lot_size=1, freeze_quantity=None, reference_price=None)
    sized = size(market(5), Strategy(PERCENTAGE, percentage=D("10")), no_price, D("10000"))
    assert sized.skip_code == NO_PRICE and sized.quantity == 0


def test_percentage_too_small_for_one_unit_is_sized_to_zero():
    sized = size(limit(5, "15980.00"), Strategy(PERCENTAGE, percentage=D("1")), EQUITY, D("10000"))
    assert sized.skip_code == SIZED_TO_ZERO and "less than one lot" in sized.skip_reason


def test_max_quantity_caps_in_whole_lots():
    assert size(market(100), Strategy(FIXED_RATIO, max_quantity=30), EQUITY, RICH).quantity == 30
    # A cap of 100 units on a lot of 65 allows one lot, not 100.
    assert size(market(650), Strategy(FIXED_RATIO, max_quantity=100), NIFTY, RICH).quantity == 65


def test_above_the_freeze_quantity_is_capped_to_it():
    sized = size(market(65 * 40), Strategy(FIXED_RATIO), NIFTY, RICH)
    assert sized.quantity == 1755 and not sized.skipped


def test_a_buy_beyond_capital_is_skipped_for_funds():
    sized = size(limit(10, "1412.30"), Strategy(FIXED_RATIO), EQUITY, D("10000"))
    assert sized.skip_code == INSUFFICIENT_FUNDS and sized.quantity == 0
    assert "14123" in sized.skip_reason


def test_a_sell_is_not_checked_against_capital():
    assert size(limit(10, "1412.30", side="SELL"), Strategy(FIXED_RATIO), EQUITY, D("10000")).quantity == 10


def test_sizing_is_exact_decimal():
    # 0.1 x 30 is exactly 3 in Decimal (a float gives 3.0000000000000004, harmless here, but 0.7 x
    # 10 in float is 7.000000000000001 and 0.29 x 100 is 28.999999999999996 -> 28).
    assert size(market(100), Strategy(FIXED_RATIO, ratio=D("0.29")), EQUITY, RICH).quantity == 29


def test_unknown_strategy_is_skipped_not_guessed():
    assert size(market(5), Strategy("MIRROR"), EQUITY, RICH).skip_code == "UNKNOWN_STRATEGY"


def test_tags_are_deterministic_short_and_distinct():
    assert tag_for(42, 7) == tag_for(42, 7)
    tags = {tag_for(m, f) for m in (1, 35, 36, 10**6, 2**62) for f in (1, 36, 10**12, 2**62)}
    assert len(tags) == 20
    assert all(1 <= len(t) <= 20 and t.isalnum() and t.isascii() for t in tags)
    # Readable when the ids fit; the length prefix keeps (1, 11) and (11, 1) apart.
    assert tag_for(1, 11) != tag_for(11, 1)
    assert tag_for(2**62, 2**62).startswith("Z")


def test_accepted_at_is_read_as_utc():
    assert parse_time("2026-11-23T10:00:00.000001Z").tzinfo is not None
    assert parse_time("2026-11-23T10:00:00").tzinfo == UTC
    assert parse_time("not a time") is None
