"""Everything the mock knows, shared by both listeners and both dialects: one object, one loop.

All of it is changed only from the event loop's thread, in synchronous steps, so nothing needs a lock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

from mock_iifl.accounts import Account, Accounts, Dialect
from mock_iifl.clock import Clock
from mock_iifl.config import AccountConfig, Faults, Latency, RateLimits, RunConfig
from mock_iifl.instruments import InstrumentMaster
from mock_iifl.lifecycle import Ids, Lifecycle
from mock_iifl.orderbook import Order, TagIndex
from mock_iifl.ratelimit import RateLimiter
from mock_iifl.trading import Broker


class Stats:
    """Global counters, by kind; the inspection endpoint returns them as they are."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # by "<dialect>.<group>" and "control"
        self.rate_limited: Counter[str] = Counter()  # 429s served, by "<dialect>.<group>"
        self.faults: Counter[str] = Counter()  # by kind, plus placed_before_fault
        self.events: Counter[str] = Counter()  # sessions_created, login_failures, auth_failures, ...

    def snapshot(self) -> dict:
        return {
            "requests": {"total": sum(self.requests.values()), **dict(sorted(self.requests.items()))},
            "rate_limited": {
                "total": sum(self.rate_limited.values()),
                **dict(sorted(self.rate_limited.items())),
            },
            "faults": dict(sorted(self.faults.items())),
            "events": dict(sorted(self.events.items())),
        }


class MockState:
    def __init__(self, master: InstrumentMaster) -> None:
        self.master = master
        self.clock = Clock()
        self.broker = Broker(self)
        self.accounts = Accounts()
        self.reset()

    def reset(self, config: RunConfig | None = None) -> None:
        for order in self.all_orders():
            order.stop_timers()
        self.config = config or RunConfig()
        self.rng = random.Random(self.config.seed)
        self.accounts = Accounts()
        # The tagged orders of all accounts, for /_mock/arrivals; cleared with the accounts.
        self.tags = TagIndex()
        self.limiter = RateLimiter()
        self.ids = Ids()
        self.stats = Stats()
        self.lifecycle = Lifecycle(self.clock, self.master, self.ids, lambda: self.config.lifecycle)
        self.master.reset_prices()
        self.clock.reset()

    def configure(self, config: RunConfig) -> None:
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    def latency_for(self, account: Account | None) -> Latency:
        own = account.config.latency if account else None
        return own or self.config.latency

    def faults_for(self, account: Account | None) -> Faults:
        own = account.config.faults if account else None
        return own or self.config.faults

    def rate_limits_for(self, account: Account | None) -> RateLimits:
        own = account.config.rate_limits if account else None
        return own or self.config.rate_limits

    def register(
        self,
        dialect: Dialect,
        client_id: str,
        app_key: str,
        app_secret: str,
        funds: Decimal | None = None,
        allowed_ips: frozenset[str] = frozenset(),
        config: AccountConfig | None = None,
        holdings: list[dict] | None = None,
        auto: bool = False,
    ) -> Account:
        account = Account(
            dialect=dialect,
            client_id=client_id,
            app_key=app_key,
            app_secret=app_secret,
            funds=self.config.auto_provision_funds if funds is None else funds,
            allowed_ips=allowed_ips,
            config=config or AccountConfig(),
            holdings=holdings or [],
            auto_provisioned=auto,
        )
        self.accounts.add(account)
        self.stats.events["accounts_auto_provisioned" if auto else "accounts_registered"] += 1
        return account

    def set_prices(self, prices: dict[str, Decimal]) -> None:
        """New reference prices; resting orders on those instruments are matched again."""
        self.master.prices.update(prices)
        for account in self.accounts.by_key.values():
            for order in account.book.orders:
                if order.instrument.key in prices and not order.terminal:
                    self.lifecycle.evaluate(account, order)

    def all_orders(self) -> Iterator[Order]:
        for account in self.accounts.by_key.values():
            yield from account.book.orders
