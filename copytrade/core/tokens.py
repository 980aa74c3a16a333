"""Access tokens: HS256 JWTs that the auth service issues and Envoy and every service verify.

Refresh tokens are deliberately not JWTs: they are opaque random strings kept in Redis, so Envoy's
jwt_authn rejects one presented as an access token (401), and a stolen one can be revoked.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from copytrade.core.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "iat", "exp", "jti")
ROLES = ("MASTER", "FOLLOWER", "ADMIN", "SERVICE")
# Services calling each other (the replicator calling the broker gateway) carry a token of this role,
# which nobody can register as or log in to: only a process holding JWT_SECRET can mint one.
SERVICE_ROLE = "SERVICE"


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    user_id: int
    role: str
    jti: str
    expires_at: int

    @property
    def is_master(self) -> bool:
        return self.role == "MASTER"

    @property
    def is_admin(self) -> bool:
        return self.role == "ADMIN"

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE_ROLE


def issue_access_token(settings: Settings, user_id: int, role: str, now: float | None = None) -> tuple[str, Principal]:
    issued_at = int(now if now is not None else time.time())
    expires_at = issued_at + settings.access_token_ttl_seconds
    jti = uuid.uuid4().hex
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": role,
        "iat": issued_at,
        "exp": expires_at,
        "jti": jti,
    }
    token = jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)
    return token, Principal(user_id, role, jti, expires_at)


def issue_service_token(settings: Settings, now: float | None = None) -> str:
    """A short-lived token for service-to-service calls (subject 0: no user)."""
    return issue_access_token(settings, 0, SERVICE_ROLE, now)[0]


def verify_access_token(settings: Settings, token: str) -> Principal:
    try:
        # `algorithms` pinned to HS256: pyjwt then refuses `alg: none` and algorithm confusion.
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    role = claims["role"]
    if role not in ROLES:
        raise InvalidToken("invalid token: unknown role")
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise InvalidToken("invalid token: malformed subject") from exc
    return Principal(user_id, role, str(claims["jti"]), int(claims["exp"]))


def bearer_token(authorization: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` value."""
    if not authorization:
        raise InvalidToken("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization must be 'Bearer <token>'")
    return token.strip()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def revoked_key(jti: str) -> str:
    """The Redis key that marks an access token as revoked until it would have expired anyway."""
    return f"auth:revoked:{jti}"
