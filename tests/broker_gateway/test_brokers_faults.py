"""Never twice, never lost: for each fault the mock can inject, the outcome each order gets and the
number of orders the mock holds and received per account.

The mock's own deduplication by tag is switched off here (dedupe=False), so that a second send
with the same tag would make a second order: only the client stands between a fault and a
duplicate.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.broker_gateway.brokers import (
    CircuitBreaker,
    Dialect,
    OrderChange,
    PlacementOutcome,
)
from services.broker_gateway.brokers.outcomes import MAX_ATTEMPTS, ActionOutcome
from tests.broker_gateway.test_brokers_support import (
    DIALECTS,
    spec,
)

# The mock IIFL process and the `brokers` helper, shared by every broker-package test module.
pytest_plugins = ("tests.broker_gateway.test_brokers_support",)

GENERIC = {Dialect.IIFL_CAPITAL_V1: "EC003", Dialect.XTS: "e-orders-0003"}
RMS = {Dialect.IIFL_CAPITAL_V1: "EC101", Dialect.XTS: "e-rms-0001"}


async def no_dedupe(mock, **faults) -> None:
    await mock.configure(dedupe=False, faults={"timeout_hold_seconds": 1.0, **faults})


def counts(summary: dict) -> tuple[int, int, int]:
    """(orders the account holds, place requests the mock acted on for it, duplicate tags). A send
    lost to a transport fault before the mock acted on it is not among them: see `arrived`."""
    return summary["orders"]["count"], summary["requests"]["place_items"], summary["orders"]["duplicates"]


async def arrived(mock, dialect: Dialect, group: str = "place") -> int:
    """Requests of an endpoint group that reached the mock in this test, acted on or not."""
    name = {Dialect.IIFL_CAPITAL_V1: "iifl_v1", Dialect.XTS: "xts"}[dialect]
    return (await mock.inspect())["stats"]["requests"].get(f"{name}.{group}", 0)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("kind", ["http_5xx", "timeout", "drop"])
async def test_a_write_that_took_effect_before_the_fault_is_found_not_resent(
    brokers, mock, dialect, kind
) -> None:
    await no_dedupe(mock, **{kind: 1.0}, placed_before_fault=1.0, applies_to=["place"])
    account, client = await brokers.ready(dialect, request_timeout=0.3)
    placed = await client.place(spec(dialect, "FAULT1"))
    assert (placed.outcome, placed.found_existing, placed.attempts) == (PlacementOutcome.PLACED, True, 1), (
        placed
    )
    assert placed.broker_order_id
    assert counts(await brokers.summary(account)) == (1, 1, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("kind", ["http_5xx", "timeout", "drop"])
async def test_a_write_lost_in_the_fault_is_resent_only_after_the_book_proves_it_absent(
    brokers, mock, dialect, kind
) -> None:
    await no_dedupe(mock, **{kind: 1.0}, placed_before_fault=0.0, applies_to=["place"])
    account, client = await brokers.ready(dialect, request_timeout=0.3)
    placed = await client.place(spec(dialect, "FAULT2"))
    # Every send failed and every lookup proved it absent: not placed, known absent, retryable.
    assert (placed.outcome, placed.attempts, placed.retryable) == (
        PlacementOutcome.FAILED,
        MAX_ATTEMPTS,
        True,
    ), placed
    assert counts(await brokers.summary(account)) == (0, 0, 0)
    assert await arrived(mock, dialect) == MAX_ATTEMPTS
    # One book read after each send, before the next: never two sends without a lookup between.
    assert await arrived(mock, dialect, "orders") == MAX_ATTEMPTS


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_mixed_faults_place_each_order_exactly_once_or_not_at_all(brokers, mock, dialect) -> None:
    await no_dedupe(
        mock, http_5xx=0.2, drop=0.15, timeout=0.1, ec003=0.2, placed_before_fault=0.5, applies_to=["place"]
    )
    pairs = [await brokers.ready(dialect, request_timeout=0.3) for _ in range(40)]
    results = await asyncio.gather(
        *(client.place(spec(dialect, f"MIX{i}")) for i, (_, client) in enumerate(pairs))
    )
    for (account, _), result in zip(pairs, results, strict=True):
        orders, received, duplicates = counts(await brokers.summary(account))
        assert duplicates == 0 and orders <= 1
        if result.outcome is PlacementOutcome.PLACED:
            assert orders == 1, result  # none lost that the broker accepted
        else:
            assert (result.outcome, orders) == (PlacementOutcome.FAILED, 0), result
        assert received <= result.attempts
    assert await arrived(mock, dialect) == sum(r.attempts for r in results)
    outcomes = [r.outcome for r in results]
    assert outcomes.count(PlacementOutcome.PLACED) >= 30
    assert any(r.found_existing for r in results), "no write took effect before its fault"
    assert any(r.attempts > 1 and r.outcome is PlacementOutcome.PLACED for r in results), (
        "no order needed a resend"
    )
    faults = (await mock.inspect())["stats"]["faults"]
    assert faults["placed_before_fault"] > 0 and faults.get("ec003", 0) > 0


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_one_book_read_settles_many_unanswered_orders_of_an_account(brokers, mock, dialect) -> None:
    await no_dedupe(mock, drop=1.0, placed_before_fault=1.0, applies_to=["place"])
    account, client = await brokers.ready(dialect)
    results = await asyncio.gather(*(client.place(spec(dialect, f"SHARE{i}")) for i in range(10)))
    assert {(r.outcome, r.found_existing, r.attempts) for r in results} == {
        (PlacementOutcome.PLACED, True, 1)
    }
    assert len({r.broker_order_id for r in results}) == 10
    assert counts(await brokers.summary(account)) == (10, 10, 0)
    # The book allows 3 reads a second: one read each would take over 3 s; shared, one or two do.
    assert await arrived(mock, dialect, "orders") <= 2
    assert max(r.latency_ms for r in results) < 1500


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_generic_failure_is_looked_up_then_retried_and_never_doubled(brokers, mock, dialect) -> None:
    await no_dedupe(mock, ec003=1.0)
    account, client = await brokers.ready(dialect)
    placed = await client.place(spec(dialect, "GEN1"))
    assert (placed.outcome, placed.error_code, placed.attempts) == (
        PlacementOutcome.FAILED,
        GENERIC[dialect],
        MAX_ATTEMPTS,
    )
    assert counts(await brokers.summary(account)) == (0, MAX_ATTEMPTS, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_rms_rejection_is_final_and_sent_once(brokers, mock, dialect) -> None:
    await no_dedupe(mock, rms_reject=1.0)
    account, client = await brokers.ready(dialect)
    placed = await client.place(spec(dialect, "RMS1"))
    assert (placed.outcome, placed.error_code, placed.attempts) == (
        PlacementOutcome.REJECTED,
        RMS[dialect],
        1,
    )
    assert "fund" in placed.reason.lower()
    assert counts(await brokers.summary(account)) == (0, 1, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_burst_to_one_account_is_paced_to_zero_429s(brokers, mock, dialect) -> None:
    await mock.configure(rate_limits={"enabled": True})
    account, client = await brokers.ready(dialect)
    started = time.monotonic()
    results = await asyncio.gather(*(client.place(spec(dialect, f"BURST{i}")) for i in range(25)))
    elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {PlacementOutcome.PLACED}
    assert elapsed >= 2.0  # 10 now, 10 a second later, 5 a second after that
    assert counts(await brokers.summary(account)) == (25, 25, 0)
    assert (await mock.inspect())["stats"]["rate_limited"]["total"] == 0


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_429s_from_a_stricter_broker_are_waited_out_without_duplicates(brokers, mock, dialect) -> None:
    bucket = {Dialect.IIFL_CAPITAL_V1: "iifl_v1.place", Dialect.XTS: "xts.order_writes"}[dialect]
    await mock.configure(dedupe=False, rate_limits={"enabled": True, "per_second": {bucket: 3}})
    account, client = await brokers.ready(dialect)
    results = await asyncio.gather(*(client.place(spec(dialect, f"STRICT{i}")) for i in range(12)))
    assert {r.outcome for r in results} == {PlacementOutcome.PLACED}
    assert all(r.attempts == 1 for r in results)  # a 429 is not an attempt: nothing was placed
    assert (await mock.inspect())["stats"]["rate_limited"]["total"] > 0
    assert counts(await brokers.summary(account)) == (12, 12, 0)


async def test_v1_expired_session_is_needs_relogin_and_nothing_is_sent(brokers, mock) -> None:
    account, client = await brokers.ready(Dialect.IIFL_CAPITAL_V1)
    await mock.control("POST", "sessions/expire", {"dialect": "iifl_v1", "client_id": account.client_id})
    placed = await client.place(spec(Dialect.IIFL_CAPITAL_V1, "EXP1"))
    assert (placed.outcome, placed.error_code, placed.attempts) == (
        PlacementOutcome.NEEDS_RELOGIN,
        "SESSION_EXPIRED",
        0,
    )
    assert placed.session_expired and client.session is None
    assert counts(await brokers.summary(account)) == (0, 0, 0)
    # Until someone gives it a new session, the client does not even try.
    again = await client.place(spec(Dialect.IIFL_CAPITAL_V1, "EXP2"))
    assert again.outcome is PlacementOutcome.NEEDS_RELOGIN
    assert (await mock.inspect())["stats"]["events"]["auth_failures"] == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_session_hook_logs_in_once_for_all_waiting_orders(brokers, mock, dialect) -> None:
    account = await brokers.account(dialect)
    calls = 0

    async def relogin(client):
        nonlocal calls
        calls += 1
        return await brokers.login(account)

    client = brokers.client(account, await brokers.login(account), on_session_expired=relogin)
    await mock.control(
        "POST", "sessions/expire", {"dialect": account.mock_name, "client_id": account.client_id}
    )
    results = await asyncio.gather(*(client.place(spec(dialect, f"HOOK{i}")) for i in range(5)))
    assert {r.outcome for r in results} == {PlacementOutcome.PLACED}
    assert all(r.session_expired for r in results)
    assert calls == 1
    summary = await brokers.summary(account)
    assert (summary["sessions_created"], *counts(summary)) == (2, 5, 5, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_unresolvable_outcome_is_unknown_never_a_guess(brokers, mock, dialect) -> None:
    # The write lands and its answer is lost; then the book cannot be read either.
    await no_dedupe(mock, drop=1.0, placed_before_fault=1.0, applies_to=["place", "orders"])
    account, client = await brokers.ready(
        dialect, order_deadline=2.5, breaker=CircuitBreaker(failure_threshold=100)
    )
    started = time.monotonic()
    placed = await client.place(spec(dialect, "UNK1"))
    assert (placed.outcome, placed.attempts, placed.retryable) == (PlacementOutcome.UNKNOWN, 1, True), placed
    assert placed.error_code == "CONNECTION_DROPPED"
    assert time.monotonic() - started < 4.0
    assert counts(await brokers.summary(account)) == (1, 1, 0)
    # Once the book answers again, the same tag is found, not placed a second time.
    await no_dedupe(mock)
    again = await client.place(spec(dialect, "UNK1"), look_first=True)
    assert (again.outcome, again.found_existing, again.attempts) == (PlacementOutcome.PLACED, True, 0)
    assert counts(await brokers.summary(account)) == (1, 1, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_circuit_breaker_stops_hammering_a_broken_account(brokers, mock, dialect) -> None:
    await no_dedupe(mock, http_5xx=1.0, placed_before_fault=0.0, applies_to=["place", "orders"])
    breaker = CircuitBreaker(failure_threshold=5, cool_down=1.0)
    account, client = await brokers.ready(dialect, order_deadline=3.0, breaker=breaker)
    first = await client.place(spec(dialect, "CB1"))
    assert (first.outcome, first.attempts) == (PlacementOutcome.UNKNOWN, 1)  # then the book never answered
    assert await arrived(mock, dialect) == 1
    started = time.monotonic()
    second = await client.place(spec(dialect, "CB2"))
    assert (second.outcome, second.error_code, second.attempts) == (
        PlacementOutcome.FAILED,
        "CIRCUIT_OPEN",
        0,
    )
    assert "circuit open" in second.reason and time.monotonic() - started < 0.1
    # A resumed order may exist: an open breaker cannot say it is absent.
    resumed = await client.place(spec(dialect, "CB1"), look_first=True)
    assert (resumed.outcome, resumed.error_code) == (PlacementOutcome.UNKNOWN, "CIRCUIT_OPEN")
    books_read = await arrived(mock, dialect, "orders")
    assert await arrived(mock, dialect) == 1  # nothing sent while open
    await no_dedupe(mock)
    await asyncio.sleep(breaker.retry_after() + 0.05)
    probe = await client.place(spec(dialect, "CB3"))
    assert probe.outcome is PlacementOutcome.PLACED
    assert counts(await brokers.summary(account)) == (1, 1, 0)
    assert (await arrived(mock, dialect), await arrived(mock, dialect, "orders")) == (2, books_read)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_cancel_without_an_answer_is_confirmed_from_the_book(brokers, mock, dialect) -> None:
    account, client = await brokers.ready(dialect, request_timeout=0.3)
    assert (await client.place(spec(dialect, "CXL1"))).outcome is PlacementOutcome.PLACED
    await no_dedupe(mock, drop=1.0, placed_before_fault=1.0, applies_to=["cancel", "modify"])
    cancelled = await client.cancel(tag="CXL1")
    assert cancelled.outcome is ActionOutcome.ACCEPTED, cancelled
    modified = await client.modify(OrderChange(quantity=10), tag="CXL1")
    assert (modified.outcome, modified.error_code) == (ActionOutcome.REJECTED, "ORDER_CLOSED")
    summary = await brokers.summary(account)
    assert (summary["requests"]["cancel"], summary["requests"]["modify"]) == (1, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_modify_without_an_answer_is_unknown(brokers, mock, dialect) -> None:
    account, client = await brokers.ready(dialect, request_timeout=0.3)
    assert (await client.place(spec(dialect, "MOD1"))).outcome is PlacementOutcome.PLACED
    await no_dedupe(mock, timeout=1.0, placed_before_fault=1.0, applies_to=["modify"])
    modified = await client.modify(OrderChange(quantity=10), tag="MOD1")
    assert (modified.outcome, modified.error_code) == (ActionOutcome.UNKNOWN, "BROKER_TIMEOUT")
    assert (await brokers.summary(account))["requests"]["modify"] == 1
