"""Users to attack with and to attack, and tokens made the way an attacker would make them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field

import grpc
import httpx
import jwt

PASSWORD = "Password123!"
FORGED_SECRET = "not-the-platform-secret-but-long-enough-for-hs256"


@dataclass
class Actor:
    id: int
    username: str
    email: str
    role: str
    access_token: str
    refresh_token: str
    password: str = PASSWORD
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)


class Actors:
    def __init__(self, stack, rest: httpx.AsyncClient, unique) -> None:
        self.stack = stack
        self.rest = rest
        self.unique = unique

    async def user(self, role: str, **fields) -> Actor:
        name = self.unique(role.lower()[:3])
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": role, **fields}
        registered = await self.rest.post("/api/users/register", json=body)
        assert registered.status_code == 200, registered.text
        grant = await self.rest.post("/api/users/login", data={"username": name, "password": PASSWORD})
        assert grant.status_code == 200, grant.text
        data = grant.json()
        return Actor(
            id=int(data["user"]["id"]),
            username=name,
            email=body["email"],
            role=role,
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
        )

    async def link_xts(self, follower: Actor, app_secret: str | None = None) -> dict:
        """The follower links an XTS account (the mock logs any key and secret in)."""
        key = self.unique("K")
        body = {"dialect": "XTS", "client_code": key, "app_key": key, "app_secret": app_secret or self.unique("S")}
        linked = await self.rest.post("/api/broker/accounts", json=body, headers=follower.headers)
        assert linked.status_code == 200, linked.text
        return body

    async def follow(self, follower: Actor, master: Actor, **strategy) -> dict:
        body = {"master_id": master.id, **(strategy or {"copy_strategy": "FIXED_RATIO", "ratio": 1})}
        followed = await self.rest.post("/api/masters/follow", json=body, headers=follower.headers)
        assert followed.status_code == 200, followed.text
        return followed.json()["subscription"]

    async def place(self, master: Actor, **order) -> dict:
        body = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1, **order}
        placed = await self.rest.post("/api/orders/place", json=body, headers=master.headers)
        assert placed.status_code == 200, placed.text
        return placed.json()["order"]

    def token(self, **claims) -> str:
        """An access token signed with the platform's own secret; `claims` override or (None) drop."""
        return mint(self.stack.settings, **claims)


def mint(settings, *, secret: str | None = None, algorithm: str = "HS256", **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "1",
        "role": "MASTER",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret or settings.jwt_secret, algorithm=algorithm)


def resigned(settings, algorithm: str, **claims) -> str:
    """The claims signed with the platform's own secret, but under another HMAC algorithm."""
    payload = mint(settings, **claims).split(".")[1]
    header = b64url(json.dumps({"alg": algorithm, "typ": "JWT"}).encode())
    digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
    signature = hmac.new(settings.jwt_secret.encode(), f"{header}.{payload}".encode(), digest).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(settings, **claims) -> str:
    """`alg: none`: the claims with no signature at all."""
    signed = mint(settings, **claims)
    payload = signed.split(".")[1]
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{payload}."


def with_claims(token: str, **claims) -> str:
    """A real token whose payload is edited after signing (the signature no longer matches)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(claims)
    return f"{header}.{b64url(json.dumps(decoded).encode())}.{signature}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def grpc_code(call) -> grpc.StatusCode:
    """The status a gRPC call ends with (OK when it succeeds)."""
    try:
        response = call
        if hasattr(response, "__aiter__"):
            async for _ in response:
                pass
        else:
            await response
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
