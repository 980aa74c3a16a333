"""Input rules for copy subscriptions. Each failure names the field, so a client knows what to fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from copytrade.core.errors import InvalidArgument
from services.replicator.models import STATUSES, STRATEGIES

MAX_RATIO = Decimal(100)
RATIO_PLACES = 4
MAX_PERCENTAGE = Decimal(100)
PERCENTAGE_PLACES = 2
# Far above any exchange's freeze quantity: a bigger number is a typo, not a trading intent.
MAX_UNITS = 10_000_000
PARAMETER_OF = {"FIXED_RATIO": "ratio", "PERCENTAGE": "percentage", "FIXED_QUANTITY": "fixed_quantity"}


@dataclass(frozen=True, slots=True)
class Settings:
    """A subscription's copy settings, checked: exactly the strategy's own parameter is set."""

    copy_strategy: str
    ratio: Decimal | None
    percentage: Decimal | None
    fixed_quantity: int | None
    max_quantity: int | None


def master_id(value: int) -> int:
    if value <= 0:
        raise InvalidArgument("is required and must be a user id", field="master_id")
    return value


def strategy(value: str, *, default: str | None = None) -> str:
    text = value.strip().upper()
    if not text and default is not None:
        return default
    if text not in STRATEGIES:
        raise InvalidArgument(f"must be one of {', '.join(STRATEGIES)}, not {value!r}", field="copy_strategy")
    return text


def status(value: str) -> str | None:
    text = value.strip().upper()
    if not text:
        return None
    if text not in STATUSES:
        raise InvalidArgument(f"must be ACTIVE or PAUSED, not {value!r}", field="status")
    return text


def decimal_from_double(value: float, *, field: str, maximum: Decimal, places: int) -> Decimal:
    """The decimal the client wrote: repr() is the shortest text that round-trips the double, so
    1.1 becomes Decimal("1.1"), never 1.100000000000000088817841970012523."""
    if math.isnan(value) or math.isinf(value):
        raise InvalidArgument("must be a finite number", field=field)
    number = Decimal(repr(value))
    if number <= 0:
        raise InvalidArgument("must be greater than 0", field=field)
    if number > maximum:
        raise InvalidArgument(f"must be at most {maximum}", field=field)
    exponent = number.as_tuple().exponent  # an int: NaN and the infinities were refused above
    if isinstance(exponent, int) and exponent < -places:
        raise InvalidArgument(f"must have at most {places} decimal places", field=field)
    return number


def units(value: int, *, field: str) -> int:
    if value < 1:
        raise InvalidArgument("must be at least 1", field=field)
    if value > MAX_UNITS:
        raise InvalidArgument(f"must be at most {MAX_UNITS}", field=field)
    return value


def cap(value: int) -> int | None:
    """max_quantity: 0 means no cap."""
    if value == 0:
        return None
    if value < 0:
        raise InvalidArgument("must not be negative; 0 means no cap", field="max_quantity")
    return units(value, field="max_quantity")


def copy_settings(
    *, copy_strategy: str, ratio: float, percentage: float, fixed_quantity: int, max_quantity: int | None
) -> Settings:
    """Settings for one strategy from request fields where 0 means "not given".

    The chosen strategy's parameter is required (0 cannot be told from absent in proto3, and a ratio
    silently defaulted would copy orders at a size nobody chose); the other strategies' parameters
    must be left out, so a client that mixes them up hears about it instead of being half-obeyed.
    """
    given = {"ratio": ratio != 0, "percentage": percentage != 0, "fixed_quantity": fixed_quantity != 0}
    wanted = PARAMETER_OF[copy_strategy]
    for field, present in given.items():
        if present and field != wanted:
            raise InvalidArgument(f"applies to {_strategy_of(field)} only, not {copy_strategy}", field=field)
    if not given[wanted]:
        raise InvalidArgument(f"is required for {copy_strategy}", field=wanted)
    return Settings(
        copy_strategy=copy_strategy,
        ratio=decimal_from_double(ratio, field="ratio", maximum=MAX_RATIO, places=RATIO_PLACES)
        if wanted == "ratio"
        else None,
        percentage=decimal_from_double(
            percentage, field="percentage", maximum=MAX_PERCENTAGE, places=PERCENTAGE_PLACES
        )
        if wanted == "percentage"
        else None,
        fixed_quantity=units(fixed_quantity, field="fixed_quantity") if wanted == "fixed_quantity" else None,
        max_quantity=None if max_quantity is None else cap(max_quantity),
    )


def _strategy_of(field: str) -> str:
    return next(name for name, parameter in PARAMETER_OF.items() if parameter == field)
