"""The auth service's own Prometheus metrics (served at its /metrics; the gRPC ones are shared)."""

from __future__ import annotations

from prometheus_client import Counter

LOGINS_THROTTLED = Counter(
    "copytrade_auth_login_throttled",
    "Logins refused with RESOURCE_EXHAUSTED because too many failed for the username or the client"
    " address within the window; a refusal over both limits counts under each.",
    ("limit",),
)
USERNAME_LIMIT = LOGINS_THROTTLED.labels("username")
ADDRESS_LIMIT = LOGINS_THROTTLED.labels("address")
