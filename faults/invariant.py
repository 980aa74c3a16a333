"""The fault suite's invariant, checked against ground truth after every scenario.

Every follower order that should exist was placed exactly once at the broker, or is recorded as failed
or skipped with a reason; none was placed twice; the master's order and the platform's records agree
with the broker. In terms of the three records:

    replicator.follower_orders   one row per (master order, following follower), none PENDING once
                                 recovered; SUBMITTED rows carry a broker order id; any other final
                                 status carries a reason code; the fan-out is DONE
    /_mock/inspect?by_tag=1      a SUBMITTED row's tag exactly once, in the follower's own account;
                                 a FAILED/SKIPPED row's tag nowhere; no tag counted twice; no order
                                 with one of these master orders' tag prefix that no row explains
    orders.orders                the master order once; one copy per replicator row with the same
                                 tag and status (the read model is fed asynchronously: waited for)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from faults.stack import Mock
from services.replicator.pipeline.store import tag_for
from stack import LocalStack

POLL_SECONDS = 0.25


@dataclass
class Verdict:
    master_order_ids: list[int]
    expected: int
    rows: int = 0
    by_status: Counter = field(default_factory=Counter)
    reason_codes: Counter = field(default_factory=Counter)
    at_broker: int = 0
    settled_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        head = "PASS" if self.ok else f"FAIL ({len(self.problems)} problems)"
        return (
            f"{head}: {len(self.master_order_ids)} master orders, {self.rows}/{self.expected} copies"
            f" [{statuses}], {self.at_broker} at the broker, settled in {self.settled_seconds:.1f} s"
        )

    def explain(self, limit: int = 20) -> str:
        lines = [self.summary(), *self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def tag_prefix(master_order_id: int) -> str:
    # Every copy's tag starts with the master order's part of it (store.tag_for).
    return tag_for(master_order_id, 0)[:-1]


class Checker:
    def __init__(self, stack: LocalStack, mock: Mock) -> None:
        self.dsn = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
        self.mock = mock

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        # A connection per query: PostgreSQL itself is restarted by some scenarios.
        connection = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    async def unsettled(self, master_order_ids: list[int]) -> list[str]:
        """What still keeps these master orders from being done (empty once they all are)."""
        try:
            fanouts = await self._fetch(
                "SELECT master_order_id, state FROM replicator.fanouts WHERE master_order_id = ANY($1::bigint[])",
                master_order_ids,
            )
            pending = await self._fetch(
                "SELECT master_order_id, count(*) AS n FROM replicator.follower_orders"
                " WHERE master_order_id = ANY($1::bigint[]) AND status = 'PENDING' GROUP BY master_order_id",
                master_order_ids,
            )
            # The read model is fed from ORDER_UPDATES in batches: settled once it shows the record.
            lagging = await self._fetch(
                "SELECT f.master_order_id, count(*) AS n FROM replicator.follower_orders AS f"
                " LEFT JOIN orders.orders AS o ON o.source_order_id = f.id"
                " WHERE f.master_order_id = ANY($1::bigint[]) AND f.status <> 'PENDING'"
                " AND (o.id IS NULL OR o.status <> f.status) GROUP BY f.master_order_id",
                master_order_ids,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            return [f"database not answering: {type(exc).__name__}"]
        states = {row["master_order_id"]: row["state"] for row in fanouts}
        out = [f"master order {m}: no fan-out yet" for m in master_order_ids if m not in states]
        out += [f"master order {m}: fan-out {s}" for m, s in states.items() if s != "DONE"]
        out += [f"master order {row['master_order_id']}: {row['n']} copies PENDING" for row in pending]
        out += [f"master order {row['master_order_id']}: {row['n']} copies not yet in the read model" for row in lagging]
        return out

    async def wait_settled(self, master_order_ids: list[int], timeout: float) -> tuple[float, list[str]]:
        """Wait (bounded) until every fan-out is DONE with nothing PENDING; (seconds, what is left)."""
        began = time.monotonic()
        left = await self.unsettled(master_order_ids)
        while left and time.monotonic() - began < timeout:
            await asyncio.sleep(POLL_SECONDS)
            left = await self.unsettled(master_order_ids)
        return time.monotonic() - began, left

    async def check(
        self,
        expected: dict[int, list[int]],
        accounts: dict[int, str],
        *,
        settle_timeout: float = 60.0,
        read_model_timeout: float = 20.0,
    ) -> Verdict:
        """expected: master order id -> the follower user ids that should each get one copy;
        accounts: follower user id -> the mock client id of their own account."""
        ids = sorted(expected)
        verdict = Verdict(ids, sum(len(v) for v in expected.values()))
        verdict.settled_seconds, left = await self.wait_settled(ids, settle_timeout)
        verdict.problems += [f"not settled after {settle_timeout:.0f} s: {what}" for what in left[:10]]

        rows = await self._fetch(
            "SELECT id, master_order_id, follower_id, tag, status, status_reason, status_reason_code,"
            " broker_order_id FROM replicator.follower_orders WHERE master_order_id = ANY($1::bigint[])",
            ids,
        )
        verdict.rows = len(rows)
        verdict.by_status = Counter(row["status"] for row in rows)
        verdict.reason_codes = Counter(row["status_reason_code"] for row in rows if row["status_reason_code"])
        by_master: dict[int, Counter] = {m: Counter() for m in ids}
        for row in rows:
            by_master[row["master_order_id"]][row["follower_id"]] += 1
        for master, followers in expected.items():
            got = by_master[master]
            missing = set(followers) - set(got)
            extra = set(got) - set(followers)
            twice = [f for f, n in got.items() if n > 1]
            if missing:
                verdict.problems.append(f"master order {master}: no copy for {len(missing)} followers, e.g. {sorted(missing)[:5]}")
            if extra:
                verdict.problems.append(f"master order {master}: copies for {len(extra)} non-followers {sorted(extra)[:5]}")
            if twice:
                verdict.problems.append(f"master order {master}: followers with two rows {twice[:5]}")

        # The broker's ground truth.
        inspection = await self.mock.inspect()
        count: Counter = Counter()
        where: dict[str, set[str]] = {}
        for account in inspection["accounts"]:
            for tag, n in (account["orders"].get("by_tag") or {}).items():
                count[tag] += n
                where.setdefault(tag, set()).add(account["client_id"])
        prefixes = [tag_prefix(m) for m in ids]
        ours = {tag: n for tag, n in count.items() if any(tag.startswith(p) for p in prefixes)}
        verdict.at_broker = sum(ours.values())
        row_tags = {row["tag"] for row in rows}
        for tag, n in ours.items():
            if n > 1:
                verdict.problems.append(f"PLACED TWICE: tag {tag} is {n} orders at the broker ({sorted(where[tag])})")
            if tag not in row_tags:
                verdict.problems.append(f"orphan: tag {tag} at the broker but no follower order has it")
        for row in rows:
            tag, status = row["tag"], row["status"]
            n = count.get(tag, 0)
            account = accounts.get(row["follower_id"])
            if status == "SUBMITTED":
                if n != 1:
                    verdict.problems.append(f"order {row['id']} ({tag}) SUBMITTED but {n} orders at the broker")
                elif account is not None and where[tag] != {account}:
                    verdict.problems.append(f"order {row['id']} ({tag}) in account {sorted(where[tag])}, not {account}")
                if not row["broker_order_id"]:
                    verdict.problems.append(f"order {row['id']} ({tag}) SUBMITTED without a broker order id")
            elif status in ("FAILED", "SKIPPED"):
                if n:
                    verdict.problems.append(f"order {row['id']} ({tag}) {status} but {n} orders at the broker")
                if not row["status_reason_code"]:
                    verdict.problems.append(f"order {row['id']} ({tag}) {status} without a reason code")
            elif status == "REJECTED":
                if n > 1:
                    verdict.problems.append(f"order {row['id']} ({tag}) REJECTED and {n} orders at the broker")
                if not row["status_reason_code"]:
                    verdict.problems.append(f"order {row['id']} ({tag}) REJECTED without a reason code")
        if inspection["totals"]["duplicates"]:
            verdict.problems.append(f"the broker counts {inspection['totals']['duplicates']} duplicate orders in all")

        verdict.problems += await self._read_model(ids, rows, read_model_timeout)
        return verdict

    async def _read_model(self, ids: list[int], rows: list[asyncpg.Record], timeout: float) -> list[str]:
        """orders.orders agrees with the replicator's record (waited for, bounded)."""
        want = {row["id"]: (row["tag"], row["status"]) for row in rows}
        deadline = time.monotonic() + timeout
        while True:
            problems: list[str] = []
            masters = await self._fetch(
                "SELECT id FROM orders.orders WHERE id = ANY($1::bigint[]) AND is_master_order", ids
            )
            absent = set(ids) - {row["id"] for row in masters}
            if absent:
                problems.append(f"master orders missing from orders.orders: {sorted(absent)}")
            copies = await self._fetch(
                "SELECT source_order_id, order_tag, status FROM orders.orders"
                " WHERE master_order_id = ANY($1::bigint[]) AND NOT is_master_order",
                ids,
            )
            seen = Counter(row["source_order_id"] for row in copies)
            have = {row["source_order_id"]: (row["order_tag"], row["status"]) for row in copies}
            twice = [s for s, n in seen.items() if n > 1]
            if twice:
                problems.append(f"read model: copies recorded twice {twice[:5]}")
            unknown = set(have) - set(want)
            if unknown:
                problems.append(f"read model: {len(unknown)} copies the replicator does not have {sorted(unknown)[:5]}")
            differ = [(i, have.get(i), w) for i, w in want.items() if have.get(i) != w]
            if differ:
                problems.append(
                    f"read model: {len(differ)} copies differ from the replicator's record"
                    f" (id, read model, replicator) e.g. {differ[:3]}"
                )
            if not problems or time.monotonic() >= deadline:
                return problems
            await asyncio.sleep(POLL_SECONDS)
