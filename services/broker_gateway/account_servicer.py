"""BrokerAccountService: a user links their IIFL account, logs in again each day, or unlinks it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import grpc

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from copytrade.core.interceptor import caller
from copytrade.core.settings import Settings
from services.broker_gateway.account_changes import AccountChanges
from services.broker_gateway.accounts import AccountRepository
from services.broker_gateway.brokers.base import (
    BrokerError,
    BrokerSession,
    Credentials,
    CredentialsRejected,
    Dialect,
    RateLimited,
)
from services.broker_gateway.credentials_vault import CredentialsVault, StoredCredentials, hint
from services.broker_gateway.models import LinkedAccount
from services.broker_gateway.sessions import SessionManager

CLIENT_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")
MAX_SECRET_LENGTH = 256


def account_message(account: LinkedAccount, settings: Settings) -> broker_pb2.LinkedAccount:
    status, reason = effective_status(account)
    return broker_pb2.LinkedAccount(
        id=account.id,
        user_id=account.user_id,
        dialect=account.dialect,
        client_code=account.client_code,
        status=status,
        status_reason=reason,
        app_key_hint=account.app_key_hint,
        login_url=settings.broker_login_url(account.dialect) if status == "NEEDS_RELOGIN" else "",
        egress_ip=settings.broker_egress_ip,
        session_expires_at=_iso(account.session_expires_at),
        last_login_at=_iso(account.last_login_at),
        created_at=_iso(account.created_at),
        updated_at=_iso(account.updated_at),
    )


def effective_status(account: LinkedAccount) -> tuple[str, str]:
    """The stored status, unless the session has lapsed since (IIFL sessions end at midnight IST)."""
    if account.status == "LINKED" and account.session_expires_at and account.session_expires_at <= datetime.now(UTC):
        return "NEEDS_RELOGIN", "the broker session ended at midnight IST; log in at IIFL again"
    return account.status, account.status_reason


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _dialect(value: str) -> Dialect:
    try:
        return Dialect(value.strip().upper())
    except ValueError:
        raise InvalidArgument("must be IIFL_CAPITAL_V1 or XTS", field="dialect") from None


def _secret(field: str, value: str, *, required: bool) -> str:
    if required and not value:
        raise InvalidArgument("is required", field=field)
    # IIFL's keys, secrets and auth codes are printable ASCII; anything else would reach the broker's
    # login as bytes it cannot take (an HTTP 500 there, "broker unreachable" here), not as a 400.
    if len(value) > MAX_SECRET_LENGTH or not all(" " <= c <= "~" for c in value):
        raise InvalidArgument(f"must be at most {MAX_SECRET_LENGTH} printable ASCII characters", field=field)
    return value


class BrokerAccountServicer(broker_pb2_grpc.BrokerAccountServiceServicer):
    def __init__(
        self,
        settings: Settings,
        accounts: AccountRepository,
        vault: CredentialsVault,
        sessions: SessionManager,
        changes: AccountChanges | None = None,
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._vault = vault
        self._sessions = sessions
        self._changes = changes or AccountChanges()

    async def LinkAccount(self, request: broker_pb2.LinkAccountRequest, context: grpc.aio.ServicerContext):
        user = caller()
        dialect = _dialect(request.dialect)
        # As given: the v1 login checksum is computed over the exact client id.
        client_code = request.client_code.strip()
        if not CLIENT_CODE.fullmatch(client_code):
            raise InvalidArgument("must be 1 to 32 letters and digits", field="client_code")
        stored = StoredCredentials(
            app_key=_secret("app_key", request.app_key, required=True),
            app_secret=_secret("app_secret", request.app_secret, required=True),
        )
        auth_code = _secret("auth_code", request.auth_code, required=False)
        session = None
        # XTS logs in with the app's key and secret alone; IIFL Capital needs the day's auth code
        # from the user's browser login, without which the account waits for a relink.
        if dialect is Dialect.XTS or auth_code:
            session = await self._open(dialect, client_code, stored, auth_code)
        account = await self._accounts.create(
            LinkedAccount(
                user_id=user.user_id,
                dialect=dialect.value,
                client_code=client_code,
                credentials_encrypted=self._vault.seal_credentials(stored),
                session_encrypted=self._vault.seal_session(session.token) if session else None,
                session_expires_at=session.expires_at if session else None,
                last_login_at=session.opened_at if session else None,
                app_key_hint=hint(stored.app_key),
                status="LINKED" if session else "NEEDS_RELOGIN",
                status_reason="" if session else "log in at IIFL, then relink with the auth code",
            )
        )
        await self._changes.changed(account.user_id)
        return broker_pb2.LinkAccountResponse(account=account_message(account, self._settings))

    async def GetLinkedAccount(self, request: broker_pb2.GetLinkedAccountRequest, context: grpc.aio.ServicerContext):
        account = await self._own_account()
        return broker_pb2.GetLinkedAccountResponse(account=account_message(account, self._settings))

    async def RelinkAccount(self, request: broker_pb2.RelinkAccountRequest, context: grpc.aio.ServicerContext):
        account = await self._own_account()
        dialect = Dialect(account.dialect)
        if bool(request.app_key) != bool(request.app_secret):
            field = "app_secret" if request.app_key else "app_key"
            raise InvalidArgument("app_key and app_secret are replaced together", field=field)
        replaced = bool(request.app_key)
        stored = (
            StoredCredentials(
                app_key=_secret("app_key", request.app_key, required=True),
                app_secret=_secret("app_secret", request.app_secret, required=True),
            )
            if replaced
            else self._vault.open_credentials(account.credentials_encrypted)
        )
        auth_code = _secret("auth_code", request.auth_code, required=dialect is Dialect.IIFL_CAPITAL_V1)
        session = await self._open(dialect, account.client_code, stored, auth_code)
        updated = await self._accounts.save_session(
            account.id,
            sealed_token=self._vault.seal_session(session.token),
            expires_at=session.expires_at,
            new_credentials=(self._vault.seal_credentials(stored), hint(stored.app_key)) if replaced else None,
        )
        self._sessions.forget(account.id)
        await self._changes.changed(account.user_id)
        if updated is None:
            raise NotFound("the linked account was removed meanwhile", field="account")
        return broker_pb2.RelinkAccountResponse(account=account_message(updated, self._settings))

    async def UnlinkAccount(self, request: broker_pb2.UnlinkAccountRequest, context: grpc.aio.ServicerContext):
        account = await self._own_account()
        await self._accounts.delete_for_user(account.user_id)
        self._sessions.forget(account.id)
        await self._changes.changed(account.user_id)
        return broker_pb2.UnlinkAccountResponse()

    async def _own_account(self) -> LinkedAccount:
        account = await self._accounts.by_user(caller().user_id)
        if account is None:
            raise NotFound("you have not linked a broker account", field="account")
        return account

    async def _open(
        self, dialect: Dialect, client_code: str, stored: StoredCredentials, auth_code: str
    ) -> BrokerSession:
        credentials = Credentials(
            client_code=client_code, app_key=stored.app_key, app_secret=stored.app_secret, auth_code=auth_code
        )
        try:
            return await self._sessions.open_session(dialect, credentials)
        except CredentialsRejected as exc:
            field = "auth_code" if auth_code else "app_secret"
            raise InvalidArgument(f"the broker refused the credentials: {exc.reason}", field=field) from None
        except RateLimited:
            # IIFL meters logins per client: a burst of relinks is a 429 to pass on, not an outage.
            raise ResourceExhausted("the broker is limiting logins for this account; try again in a minute") from None
        except BrokerError as exc:
            raise Unavailable(f"the broker could not be reached to log in ({exc.code}); try again") from None
