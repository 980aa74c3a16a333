"""Broker sessions of linked accounts: one AccountClient per account per process, built from the
session stored (encrypted) in PostgreSQL, so that every gateway replica shares one broker session
per account and a relink through any replica reaches all of them.

When the broker refuses a session: XTS logs in again with the stored app key and secret; IIFL
Capital needs the user's own daily login, so the account is marked NEEDS_RELOGIN, and every order
for it comes back with that reason until the user relinks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from copytrade.core.logging import get_logger
from copytrade.core.settings import Settings
from services.broker_gateway.accounts import AccountRepository, AccountRow
from services.broker_gateway.brokers import (
    AccountClient,
    BrokerAdapter,
    BrokerError,
    BrokerSession,
    CircuitBreaker,
    Credentials,
    CredentialsRejected,
    Dialect,
    HttpClients,
    make_adapter,
    metrics,
)
from services.broker_gateway.credentials_vault import CredentialsVault, VaultError
from services.broker_gateway.instruments import InstrumentMaster
from services.broker_gateway.models import LinkedAccount

log = get_logger(__name__)
RELOGIN_REASON = "the broker session has lapsed; log in at IIFL and relink the account"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why orders for an account cannot be sent at all: `code` is the PlacementOutcome name."""

    code: str  # NEEDS_RELOGIN or ACCOUNT_NOT_LINKED
    reason: str


@dataclass(frozen=True, slots=True)
class Ready:
    client: AccountClient
    user_id: int
    dialect: Dialect


Resolution = Ready | Refusal
# A fan-out reads light rows (by_ids); a lapsed session re-reads the full account (by_id).
AccountState = AccountRow | LinkedAccount


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        accounts: AccountRepository,
        vault: CredentialsVault,
        http: HttpClients,
        instruments: InstrumentMaster,
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._vault = vault
        self._adapters: dict[Dialect, BrokerAdapter] = {
            dialect: metrics.MeteredAdapter(make_adapter(dialect, http.for_dialect(dialect.value), instruments))
            for dialect in Dialect
        }
        # account id -> (the sealed session the client was built from, the client)
        self._clients: dict[int, tuple[str, AccountClient]] = {}
        metrics.BREAKER_STATES.watch(self)

    def breakers(self) -> Iterator[tuple[Dialect, CircuitBreaker]]:
        """Each account client's circuit breaker, with its dialect (read by the metrics scrape)."""
        for _, client in list(self._clients.values()):
            yield client.adapter.dialect, client.breaker

    async def open_session(self, dialect: Dialect, credentials: Credentials) -> BrokerSession:
        """Log in for a link or relink. Raises CredentialsRejected or another BrokerError."""
        return await self._adapters[dialect].open_session(
            credentials, timeout=self._settings.broker_request_timeout_seconds
        )

    def forget(self, account_id: int) -> None:
        self._clients.pop(account_id, None)

    async def resolve(self, account_ids: Iterable[int]) -> dict[int, Resolution]:
        """A client, or the reason there is none, for each account: one query for a whole fan-out.

        The rows are read every time (not cached) so that an unlink or a lapsed session on another
        replica is seen at once; a client is rebuilt only when its stored session changed.
        """
        wanted = set(account_ids)
        rows = await self._accounts.by_ids(wanted)
        resolved: dict[int, Resolution] = {}
        for account_id in wanted:
            row = rows.get(account_id)
            if row is None:
                resolved[account_id] = Refusal("ACCOUNT_NOT_LINKED", f"no linked broker account {account_id}")
                self.forget(account_id)
            else:
                resolved[account_id] = self._ready(row)
        return resolved

    def _ready(self, row: AccountState) -> Resolution:
        lapsed = row.session_expires_at is not None and row.session_expires_at <= datetime.now(UTC)
        if row.status != "LINKED" or not row.session_encrypted or lapsed:
            if Dialect(row.dialect) is Dialect.XTS and row.status == "LINKED":
                # XTS can log in again by itself: give it a client with no session, whose hook does.
                return Ready(self._client(row, None), row.user_id, Dialect.XTS)
            return Refusal("NEEDS_RELOGIN", row.status_reason or RELOGIN_REASON)
        cached = self._clients.get(row.id)
        if cached is not None and cached[0] == row.session_encrypted:
            # The session this client holds is the stored one: no need to decrypt it again (a
            # Fernet open per account per fan-out is a measurable share of a 5,000-order one).
            return Ready(cached[1], row.user_id, Dialect(row.dialect))
        try:
            token = self._vault.open_session(row.session_encrypted)
        except VaultError as exc:
            return Refusal("NEEDS_RELOGIN", str(exc))
        session = BrokerSession(
            token=token,
            dialect=Dialect(row.dialect),
            opened_at=row.last_login_at or row.updated_at,
            expires_at=row.session_expires_at or datetime.max.replace(tzinfo=UTC),
        )
        return Ready(self._client(row, session), row.user_id, Dialect(row.dialect))

    def _client(self, row: AccountState, session: BrokerSession | None) -> AccountClient:
        sealed = row.session_encrypted or ""
        cached = self._clients.get(row.id)
        if cached is not None and cached[0] == sealed:
            return cached[1]
        if cached is not None:
            # Same account, new session (a relink elsewhere): keep the pacing and breaker state.
            cached[1].replace_session(session)
            self._clients[row.id] = (sealed, cached[1])
            return cached[1]
        client = AccountClient.from_settings(
            self._adapters[Dialect(row.dialect)],
            session,
            self._settings,
            on_session_expired=self._session_expired,
            account_id=row.id,
        )
        self._clients[row.id] = (sealed, client)
        return client

    async def _session_expired(self, client: AccountClient) -> BrokerSession | None:
        """The broker refused the client's session: a new one, or None (account NEEDS_RELOGIN)."""
        row = await self._accounts.by_id(client.account_id)
        if row is None:
            return None
        cached = self._clients.get(row.id)
        if row.session_encrypted and cached is not None and cached[0] != row.session_encrypted:
            # Another replica (or a relink) stored a newer session since this client was built.
            resolution = self._ready(row)
            return resolution.client.session if isinstance(resolution, Ready) else None
        if Dialect(row.dialect) is Dialect.XTS:
            return await self._login_again(row, client)
        await self._accounts.mark_needs_relogin(row.id, RELOGIN_REASON)
        log.info("account_needs_relogin", account_id=row.id, user_id=row.user_id)
        return None

    async def _login_again(self, row: LinkedAccount, client: AccountClient) -> BrokerSession | None:
        try:
            stored = self._vault.open_credentials(row.credentials_encrypted)
            session = await client.open_session(
                Credentials(client_code=row.client_code, app_key=stored.app_key, app_secret=stored.app_secret)
            )
        except (CredentialsRejected, VaultError) as exc:
            await self._accounts.mark_needs_relogin(row.id, f"the broker refused the stored credentials: {exc}")
            log.info("account_needs_relogin", account_id=row.id, user_id=row.user_id)
            return None
        except BrokerError:
            return None  # the broker is not answering; the orders waiting on this say so themselves
        sealed = self._vault.seal_session(session.token)
        await self._accounts.save_session(row.id, sealed_token=sealed, expires_at=session.expires_at)
        self._clients[row.id] = (sealed, client)
        return session
