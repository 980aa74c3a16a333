"""AuthService: registration, login, token refresh and logout, the caller's profile."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import grpc

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from copytrade.core.interceptor import caller, client_address
from copytrade.core.settings import Settings
from copytrade.core.tokens import issue_access_token
from services.auth import validation
from services.auth.models import User
from services.auth.passwords import PasswordHasher
from services.auth.sessions import LoginThrottle, TokenStore
from services.auth.users import UserRepository

# One message for every failed login: a different one for unknown users would reveal who exists.
BAD_CREDENTIALS = "incorrect username or password"
MAX_LOGIN_FIELD = 254


def user_message(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        iifl_account_id=user.iifl_account_id,
        balance=f"{user.balance:.2f}",
        is_active=user.is_active,
        created_at=user.created_at.isoformat(),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        settings: Settings,
        users: UserRepository,
        hasher: PasswordHasher,
        tokens: TokenStore,
        throttle: LoginThrottle,
    ) -> None:
        self._settings = settings
        self._users = users
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle

    async def Register(self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext):
        new = validation.new_user(
            email=request.email,
            username=request.username,
            password=request.password,
            full_name=request.full_name,
            role=request.role,
            iifl_account_id=request.iifl_account_id,
        )
        user = await self._users.create(new, await self._hasher.hash(new.password))
        return auth_pb2.RegisterResponse(**_user_fields(user_message(user)))

    async def Login(self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext):
        return auth_pb2.LoginResponse(**await self._login(request.username, request.password, context))

    async def LoginWithHttpBody(self, request: auth_pb2.LoginWithHttpBodyRequest, context: grpc.aio.ServicerContext):
        username, password = _credentials_from_body(request.http_body.content_type, request.http_body.data)
        return auth_pb2.LoginWithHttpBodyResponse(**await self._login(username, password, context))

    async def _login(self, username: str, password: str, context: grpc.aio.ServicerContext) -> dict:
        if not username.strip():
            raise InvalidArgument("is required", field="username")
        if not password:
            raise InvalidArgument("is required", field="password")
        if len(username) > MAX_LOGIN_FIELD:
            raise Unauthenticated(BAD_CREDENTIALS)
        if "\x00" in username:
            # No username or email holds one (and PostgreSQL text cannot): say so, whoever exists.
            raise InvalidArgument("must not contain NUL characters", field="username")
        address = client_address(context)
        user = await self._users.by_login_name(username)
        # Failures count per account, not per spelling: "alice", " Alice " and alice's email are one
        # account and share one budget (the lookup is case-insensitive and ignores the spaces).
        subject = f"id:{user.id}" if user is not None else f"name:{username.strip().lower()}"
        wait = await self._throttle.retry_after(subject, address)
        if wait is not None:
            raise ResourceExhausted(f"too many failed logins; try again in {wait} seconds")
        matches = await self._hasher.verify(password, user.hashed_password if user else None)
        if user is None or not matches or not user.is_active:
            await self._throttle.record_failure(subject, address)
            raise Unauthenticated(BAD_CREDENTIALS)
        await self._throttle.record_success(subject)
        return {**await self._grant(user), "user": user_message(user)}

    async def _grant(self, user: User) -> dict:
        access_token, _ = issue_access_token(self._settings, user.id, user.role)
        return {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": self._settings.access_token_ttl_seconds,
            "refresh_token": await self._tokens.issue_refresh_token(user.id),
        }

    async def Refresh(self, request: auth_pb2.RefreshRequest, context: grpc.aio.ServicerContext):
        if not request.refresh_token:
            raise InvalidArgument("is required", field="refresh_token")
        grant = await self._tokens.consume_refresh_token(request.refresh_token)
        if grant is None:
            raise Unauthenticated("refresh token is invalid, expired or already used")
        user = await self._users.by_id(grant.user_id)
        if user is None or not user.is_active:
            raise Unauthenticated("refresh token is invalid, expired or already used")
        return auth_pb2.RefreshResponse(**await self._grant(user))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext):
        principal = caller()
        await self._tokens.revoke_access_token(principal)
        if request.refresh_token:
            await self._tokens.revoke_refresh_token(request.refresh_token, principal.user_id)
        return auth_pb2.LogoutResponse(revoked=True)

    async def GetMe(self, request: auth_pb2.GetMeRequest, context: grpc.aio.ServicerContext):
        principal = caller()
        user = await self._users.by_id(principal.user_id)
        if user is None or not user.is_active:
            raise Unauthenticated("this account no longer exists or is disabled")
        return auth_pb2.GetMeResponse(user=user_message(user))


def _user_fields(user: auth_pb2.User) -> dict:
    return {field.name: value for field, value in user.ListFields()}


def _credentials_from_body(content_type: str, data: bytes) -> tuple[str, str]:
    """The seed's login accepted an HTML form; JSON is accepted too."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("body is not valid UTF-8", field="body") from None
    if media_type == "application/x-www-form-urlencoded":
        form = parse_qs(text, keep_blank_values=True)
        return form.get("username", [""])[0], form.get("password", [""])[0]
    if media_type == "application/json":
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"body is not valid JSON ({exc.msg})", field="body") from None
        except RecursionError:
            # A login is two strings: a body nested thousands deep is an attack on the parser.
            raise InvalidArgument("body is nested too deeply", field="body") from None
        if not isinstance(body, dict):
            raise InvalidArgument("body must be a JSON object", field="body")
        username, password = body.get("username", ""), body.get("password", "")
        for field, value in (("username", username), ("password", password)):
            if not isinstance(value, str):
                raise InvalidArgument("must be a string", field=field)
            if not _is_utf8(value):
                # JSON can spell a lone surrogate ("\ud800"), which no UTF-8 text (or password) holds.
                raise InvalidArgument("is not valid Unicode text", field=field)
        return username, password
    raise InvalidArgument(
        "Content-Type must be application/x-www-form-urlencoded or application/json", field="content_type"
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
