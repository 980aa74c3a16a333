"""Per-run and per-account behaviour: latency, rate limits, injected faults, the order lifecycle.

Set through the control API (see the package docstring for the JSON). A section given replaces that
section whole, with defaults for what it leaves out; sections not given stay as they were. An
account's own section, where it has one, replaces the run's for that account.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

# Endpoint groups, the names faults.applies_to and the rate-limit table use.
GROUPS = (
    "session",
    "place",
    "modify",
    "cancel",
    "orders",
    "order",
    "trades",
    "positions",
    "holdings",
    "limits",
    "contracts",
)
WRITE_GROUPS = frozenset({"place", "modify", "cancel"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Section):
    """Added to every request before it is answered (429s and faults included)."""

    kind: Literal["uniform", "fixed", "zero"] = "uniform"
    min_ms: float = Field(50.0, ge=0, le=60_000)
    max_ms: float = Field(150.0, ge=0, le=60_000)
    # For kind "fixed".
    ms: float = Field(100.0, ge=0, le=60_000)

    @model_validator(mode="after")
    def _ordered(self) -> Latency:
        if self.min_ms > self.max_ms:
            raise ValueError("min_ms must not exceed max_ms")
        return self

    def seconds(self, rng: random.Random) -> float:
        if self.kind == "zero":
            return 0.0
        if self.kind == "fixed":
            return self.ms / 1000
        return rng.uniform(self.min_ms, self.max_ms) / 1000


class RateLimits(_Section):
    """Per-session calls per second, as in IIFL_API.md; over the limit is HTTP 429 with no body."""

    enabled: bool = True
    # Overrides by bucket, e.g. {"iifl_v1.place": 20, "xts.order_writes": 5}.
    per_second: dict[str, Annotated[int, Field(ge=1, le=100_000)]] = Field(default_factory=dict)


class Faults(_Section):
    """Probabilities drawn per request (transport faults) or per order (the rest)."""

    # Transport faults: one draw per request to a group in applies_to.
    http_5xx: Probability = 0.0
    timeout: Probability = 0.0
    drop: Probability = 0.0
    # For a write hit by a transport fault: the chance it took effect before the fault.
    placed_before_fault: Probability = 0.5
    http_5xx_statuses: list[Annotated[int, Field(ge=500, le=599)]] = Field(
        default_factory=lambda: [500, 502, 503, 504], min_length=1
    )
    # How long a "timeout" holds the request before closing without an answer.
    timeout_hold_seconds: float = Field(30.0, gt=0, le=600)
    applies_to: list[str] = Field(
        default_factory=lambda: [g for g in GROUPS if g not in ("session", "contracts")]
    )
    # Answers: EC003 (v1) / e-orders-0003 (XTS), on place, modify and cancel; nothing changes.
    ec003: Probability = 0.0
    # Order refused at once by RMS (insufficient funds): an inner error (v1) / HTTP 400 (XTS).
    rms_reject: Probability = 0.0
    # Order accepted, then REJECTED in the book with a rejection reason.
    exchange_reject: Probability = 0.0
    # Order fills in two or more tranches (lifecycle.partial_parts at most) instead of at once.
    partial_fill: Probability = 0.0

    @field_validator("applies_to")
    @classmethod
    def _known_groups(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown endpoint groups {unknown}; known: {list(GROUPS)}")
        return value

    @model_validator(mode="after")
    def _transport_total(self) -> Faults:
        if self.http_5xx + self.timeout + self.drop > 1.0:
            raise ValueError("http_5xx + timeout + drop must not exceed 1")
        return self


class Lifecycle(_Section):
    """How fast orders move: accepted -> open (ack_ms) -> each fill (fill_ms)."""

    ack_ms: float = Field(100.0, ge=0, le=600_000)
    fill_ms: float = Field(200.0, ge=0, le=600_000)
    partial_parts: int = Field(3, ge=2, le=20)


class RunConfig(_Section):
    latency: Latency = Latency()
    rate_limits: RateLimits = RateLimits()
    faults: Faults = Faults()
    lifecycle: Lifecycle = Lifecycle()
    # A repeated place with the same orderTag / orderUniqueIdentifier in one session returns the
    # order it made the first time. Off, every place makes an order (to test the client alone).
    dedupe: bool = True
    # Unknown XTS app keys log in as new accounts, and /_mock/v1/authcode registers unknown clients.
    auto_provision: bool = True
    auto_provision_funds: Decimal = Field(Decimal("10000000.00"), ge=0)
    # Order writes from an address outside an account's allowed_ips are refused (EC500).
    enforce_ip_whitelist: bool = False
    # Seeds every random draw (latency, faults, fill tranches) for a reproducible run.
    seed: int | None = None


class AccountConfig(_Section):
    latency: Latency | None = None
    rate_limits: RateLimits | None = None
    faults: Faults | None = None


def merged(current: RunConfig, update: dict) -> RunConfig:
    """`current` with the sections named in `update` replaced (validated; ValueError if bad)."""
    return RunConfig.model_validate({**current.model_dump(), **update})
