"""Broker accounts, their logins and their sessions.

IIFL Capital v1: the user logs in in a browser and IIFL redirects with a one-time auth code; the
client then proves it holds the app secret with checkSum = sha256_hex(clientId + authCode +
appSecret). The server cannot invert the hash, so each issued auth code's checksum is computed when
the code is issued and looked up when it comes back. XTS: appKey + secretKey give a token directly.

Sessions of both dialects die at midnight IST (by the mock's clock) or when expired on demand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from mock_iifl.clock import next_midnight
from mock_iifl.config import AccountConfig
from mock_iifl.orderbook import Order, OrderBook

Dialect = Literal["iifl_v1", "xts"]
DIALECTS: tuple[Dialect, ...] = ("iifl_v1", "xts")
_AUTH_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(eq=False)
class Account:
    dialect: Dialect
    client_id: str  # v1 clientId; XTS userID
    app_key: str
    app_secret: str  # v1 appSecret; XTS secretKey
    funds: Decimal
    allowed_ips: frozenset[str] = frozenset()
    config: AccountConfig = field(default_factory=AccountConfig)
    holdings: list[dict] = field(default_factory=list)
    auto_provisioned: bool = False
    book: OrderBook = field(default_factory=OrderBook)
    sessions_created: int = 0

    @property
    def key(self) -> str:
        return f"{self.dialect}:{self.client_id}"


@dataclass(eq=False, slots=True)
class Session:
    token: str
    account: Account
    created_at: datetime
    expires_at: datetime
    alive: bool = True
    # orderTag / orderUniqueIdentifier -> the order it made in this session.
    tags: dict[str, Order] = field(default_factory=dict)

    def valid(self, now: datetime) -> bool:
        return self.alive and now < self.expires_at


class LoginError(Exception):
    """A login that must fail: the message says why, as the dialect will word it."""


class Accounts:
    def __init__(self) -> None:
        self._signing_key = secrets.token_bytes(32)
        self.by_key: dict[str, Account] = {}
        self.xts_by_app_key: dict[str, Account] = {}
        # checksum -> (account, auth code) for each v1 auth code issued and not yet used.
        self._pending: dict[str, tuple[Account, str]] = {}
        self._code_of: dict[str, str] = {}  # account key -> its current unused checksum
        self.sessions: dict[str, Session] = {}

    def get(self, dialect: str, client_id: str) -> Account | None:
        return self.by_key.get(f"{dialect}:{client_id}")

    def add(self, account: Account) -> Account:
        if account.key in self.by_key:
            raise ValueError(f"{account.dialect} account {account.client_id!r} is already registered")
        if account.dialect == "xts":
            if account.app_key in self.xts_by_app_key:
                raise ValueError(f"XTS app key {account.app_key!r} is already registered")
            self.xts_by_app_key[account.app_key] = account
        self.by_key[account.key] = account
        return account

    def issue_auth_code(self, account: Account) -> str:
        """A fresh one-time auth code, as the daily browser login hands out; the previous one dies."""
        stale = self._code_of.pop(account.key, None)
        if stale is not None:
            self._pending.pop(stale, None)
        code = "".join(secrets.choice(_AUTH_CODE_ALPHABET) for _ in range(24))
        checksum = v1_checksum(account.client_id, code, account.app_secret)
        self._pending[checksum] = (account, code)
        self._code_of[account.key] = checksum
        return code

    def pending_login(self, checksum: str) -> Account | None:
        pending = self._pending.get(checksum)
        return pending[0] if pending else None

    def v1_login(self, checksum: str, now: datetime) -> Session:
        pending = self._pending.pop(checksum, None)
        if pending is None:
            raise LoginError("Invalid checkSum, or the auth code is used or expired")
        account, _ = pending
        self._code_of.pop(account.key, None)
        return self._open(account, now)

    def xts_login(self, app_key: str, secret_key: str, now: datetime) -> Session:
        account = self.xts_by_app_key.get(app_key)
        if account is None or not hmac.compare_digest(account.app_secret, secret_key):
            raise LoginError("Invalid appKey or secretKey")
        return self._open(account, now)

    def session(self, token: str, now: datetime) -> Session | None:
        session = self.sessions.get(token)
        if session is None or not session.valid(now):
            return None
        return session

    def expire(self, account: Account | None = None) -> int:
        count = 0
        for session in self.sessions.values():
            if session.alive and (account is None or session.account is account):
                session.alive = False
                count += 1
        return count

    def _open(self, account: Account, now: datetime) -> Session:
        expires = next_midnight(now)
        token = self._jwt(account, now, expires)
        session = Session(token=token, account=account, created_at=now, expires_at=expires)
        self.sessions[token] = session
        account.sessions_created += 1
        return session

    def _jwt(self, account: Account, now: datetime, expires: datetime) -> str:
        # Both brokers hand out JWTs; clients only pass them back, but some decode the claims.
        claims = {
            "sub": account.client_id,
            "preferred_username": account.client_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(8),
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._signing_key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(signature)}"


def v1_checksum(client_id: str, auth_code: str, app_secret: str) -> str:
    return hashlib.sha256(f"{client_id}{auth_code}{app_secret}".encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
