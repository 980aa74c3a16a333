"""Secrets stay secret: broker credentials and sessions encrypted at rest, no secret in any log line
of any process, none in the repository."""

import asyncio
import hashlib
import math
import re
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from copytrade.core.settings import DEVELOPMENT_CREDENTIALS_KEY, DEVELOPMENT_JWT_SECRET
from services.broker_gateway.credentials_vault import CredentialsVault

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
# The mock broker is IIFL's side of the line: it is given the credentials on purpose.
NOT_OURS = {"mock_iifl"}


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def mock_v1_auth_code(stack, client_id: str, app_secret: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        issued = await client.post(
            f"http://127.0.0.1:{stack.settings.mock_iifl_port}/_mock/v1/authcode",
            json={"client_id": client_id, "app_secret": app_secret},
        )
    assert issued.status_code in (200, 201), issued.text
    return issued.json()["auth_code"]


@pytest.fixture(scope="module")
async def secrets_in_use(stack):
    """Two linked accounts (one per IIFL dialect), a relink, a refused link, logins and a logout,
    each with secrets nobody else uses, and the broker session tokens the gateway was given."""
    tag = uuid.uuid4().hex[:10]
    s = {
        "xts_key": f"XK{tag}", "xts_secret": f"XtsSecret{tag}", "v1_key": f"VK{tag}",
        "v1_secret": f"V1Secret{tag}", "new_xts_key": f"NK{tag}",
        "new_xts_secret": f"NewXtsSecret{tag}", "wrong_password": f"Wrong{tag}9", "refused_secret": f"Refused{tag}",
        "password": f"Pw{tag}7x",
    }  # fmt: skip
    # Client codes are account numbers, not secrets: stored and shown as they are.
    xts_client, v1_client = f"XC{tag}", f"V1C{tag}"
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        users = {}
        for role in ("xts", "v1", "master"):
            name = f"sec{role}{tag}"
            body = {"email": f"{name}@example.com", "username": name, "password": s["password"],
                    "role": "MASTER" if role == "master" else "FOLLOWER"}  # fmt: skip
            assert (await rest.post("/api/users/register", json=body)).status_code == 200
            failed = await rest.post("/api/users/login", data={"username": name, "password": s["wrong_password"]})
            assert failed.status_code == 401
            grant = (await rest.post("/api/users/login", data={"username": name, "password": s["password"]})).json()
            users[role] = {"id": int(grant["user"]["id"]), "headers": {"Authorization": f"Bearer {grant['access_token']}"},
                           "grant": grant}  # fmt: skip
        xts, v1, master = users["xts"], users["v1"], users["master"]
        linked = await rest.post(
            "/api/broker/accounts",
            json={"dialect": "XTS", "client_code": xts_client, "app_key": s["xts_key"], "app_secret": s["xts_secret"]},
            headers=xts["headers"],
        )
        assert linked.status_code == 200, linked.text
        refused = await rest.post(
            "/api/broker/accounts",
            json={"dialect": "IIFL_CAPITAL_V1", "client_code": v1_client, "app_key": s["v1_key"],
                  "app_secret": s["refused_secret"], "auth_code": f"bogus{tag}"},
            headers=v1["headers"],
        )  # fmt: skip
        assert refused.status_code == 400, refused.text
        s["auth_code"] = await mock_v1_auth_code(stack, v1_client, s["v1_secret"])
        linked = await rest.post(
            "/api/broker/accounts",
            json={"dialect": "IIFL_CAPITAL_V1", "client_code": v1_client, "app_key": s["v1_key"],
                  "app_secret": s["v1_secret"], "auth_code": s["auth_code"]},
            headers=v1["headers"],
        )  # fmt: skip
        assert linked.status_code == 200, linked.text
        assert linked.json()["account"]["status"] == "LINKED"
        relinked = await rest.post(
            "/api/broker/accounts/me:relink",
            json={"app_key": s["new_xts_key"], "app_secret": s["new_xts_secret"]},
            headers=xts["headers"],
        )
        assert relinked.status_code == 200, relinked.text
        # The session tokens are used too: the master's order is placed in both followers' accounts.
        for follower in (xts, v1):
            followed = await rest.post(
                "/api/masters/follow", json={"master_id": master["id"], "ratio": 1}, headers=follower["headers"]
            )
            assert followed.status_code == 200, followed.text
        placed = await rest.post(
            "/api/orders/place",
            json={"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1},
            headers=master["headers"],
        )
        assert placed.status_code == 200, placed.text
        order_id = placed.json()["order"]["id"]
        for _ in range(200):
            report = await rest.get(f"/api/orders/{order_id}/replication", headers=master["headers"])
            summary = report.json()["summary"]
            if summary["followers_targeted"] == "2" and summary.get("complete"):
                break
            await asyncio.sleep(0.05)
        assert report.json()["summary"]["placed"] == "2", report.text
        grant = xts["grant"]
        refreshed = await rest.post("/api/users/refresh", json={"refresh_token": grant["refresh_token"]})
        assert refreshed.status_code == 200
        fresh = refreshed.json()
        out = await rest.post(
            "/api/users/logout",
            json={"refresh_token": fresh["refresh_token"]},
            headers={"Authorization": f"Bearer {fresh['access_token']}"},
        )
        assert out.status_code == 200
        s.update(
            access_token=grant["access_token"], refresh_token=grant["refresh_token"],
            fresh_access_token=fresh["access_token"], fresh_refresh_token=fresh["refresh_token"],
        )  # fmt: skip

    connection = await asyncpg.connect(plain_dsn(stack.database_url))
    try:
        rows = await connection.fetch(
            "SELECT user_id, credentials_encrypted, session_encrypted, t::text AS whole "
            "FROM broker_gateway.linked_accounts t WHERE user_id = ANY($1::bigint[])",
            [xts["id"], v1["id"]],
        )
    finally:
        await connection.close()
    assert len(rows) == 2
    vault = CredentialsVault(stack.settings.credentials_key)
    by_user = {row["user_id"]: row for row in rows}
    s["xts_session"] = vault.open_session(by_user[xts["id"]]["session_encrypted"])
    s["v1_session"] = vault.open_session(by_user[v1["id"]]["session_encrypted"])
    return {"secrets": s, "rows": by_user, "users": users, "vault": vault}


def secret_values(secrets: dict) -> dict[str, str]:
    return {name: value for name, value in secrets.items() if isinstance(value, str) and len(value) >= 8}


async def test_broker_credentials_and_sessions_are_encrypted_at_rest(stack, secrets_in_use):
    s, rows, users, vault = (secrets_in_use[k] for k in ("secrets", "rows", "users", "vault"))
    xts_row, v1_row = rows[users["xts"]["id"]], rows[users["v1"]["id"]]
    # The control: what is stored is the credentials and the sessions, encrypted.
    assert vault.open_credentials(xts_row["credentials_encrypted"]).app_secret == s["new_xts_secret"]
    assert vault.open_credentials(v1_row["credentials_encrypted"]).app_secret == s["v1_secret"]
    assert len(s["xts_session"]) >= 8 and len(s["v1_session"]) >= 8
    for row in (xts_row, v1_row):
        for name, value in secret_values(s).items():
            assert value not in row["whole"], f"{name} is stored in plain text"
    # Nowhere else in the broker gateway's schema either, nor in the auth schema.
    connection = await asyncpg.connect(plain_dsn(stack.database_url))
    try:
        for schema in ("broker_gateway", "auth"):
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                schema,
            )
            for table in tables:
                for name, value in secret_values(s).items():
                    found = await connection.fetchval(
                        f'SELECT count(*) FROM "{schema}"."{table["table_name"]}" t WHERE strpos(t::text, $1) > 0',
                        value,
                    )
                    assert found == 0, f"{name} is stored in plain text in {schema}.{table['table_name']}"
        hashed = await connection.fetchval(
            "SELECT hashed_password FROM auth.users WHERE id = $1", users["xts"]["id"]
        )
        assert hashed.startswith("$2") and s["password"] not in hashed
    finally:
        await connection.close()


async def test_refresh_tokens_are_kept_as_digests_only(stack, secrets_in_use):
    s = secrets_in_use["secrets"]
    client = aioredis.from_url(stack.redis_url)
    try:
        live = s["fresh_refresh_token"]
        assert not await client.exists(f"auth:refresh:{live}")
        for token in (s["refresh_token"], s["fresh_refresh_token"]):
            # Both were used up (refresh, logout), so not even their digests remain.
            assert not await client.exists("auth:refresh:" + hashlib.sha256(token.encode()).hexdigest())
    finally:
        await client.aclose()


async def test_no_secret_reaches_any_log_line_of_any_process(stack, secrets_in_use):
    # The services write unbuffered; Envoy buffers its access log and writes it out when told to.
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.post(f"{stack.envoy_admin_url}/reopen_logs")).status_code == 200
    for _ in range(50):
        if '"path":"/api/users/logout"' in stack.processes["envoy"].log_path.read_text(errors="replace"):
            break
        await asyncio.sleep(0.1)
    secrets = secret_values(secrets_in_use["secrets"])
    logs = {name: process.log_path for name, process in stack.processes.items() if name not in NOT_OURS}
    assert {"auth", "orders", "replicator", "broker_gateway", "envoy"} <= logs.keys()
    leaks = []
    scanned = 0
    for name, path in logs.items():
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            scanned += 1
            leaks += [(name, number, secret) for secret, value in secrets.items() if value in line]
    assert scanned > 0
    assert not leaks, leaks
    # The control: the logs do record this activity (Envoy's access log has a line per request).
    access_log = logs["envoy"].read_text(errors="replace")
    for path in ("/api/broker/accounts/me:relink", "/api/users/logout", "/api/users/refresh"):
        assert f'"path":"{path}"' in access_log, path


# ---------------------------------------------------------------------------------- the repository

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{16,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"'$]+:[^/\s:@\"'${}]{3,}@"),
}
# A secret-looking name given a long literal value: flagged when the value looks random.
ASSIGNED = re.compile(
    r"(?i)\b[\w.-]*(?:secret|passw(?:or)?d|token|api_?key|private_?key|credentials?_?key)[\w.-]*[\"']?\s*[:=]\s*"
    r"[\"']([A-Za-z0-9+/=_-]{20,})[\"']"
)
SECRET_FILE_NAMES = re.compile(r"(?:^|/)(?:\.env(?:\.[\w-]+)?|id_[rd]sa|id_ecdsa|id_ed25519|[^/]+\.(?:pem|key|p12|pfx|jks))$")
# The public development defaults, refused in production, belong in the settings (and in the
# development compose file that passes them on, overridable); anywhere else they are a copy.
DEV_SECRET_HOMES = {"copytrade/core/settings.py", "docker-compose.yml"}
# The development compose's own PostgreSQL, created with these credentials.
URL_PASSWORD_HOMES = {"docker-compose.yml"}


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=False, timeout=30
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.decode(errors='replace').strip()}")
    return [name for name in listed.stdout.decode().split("\0") if name]


def test_repository_holds_no_secrets():
    findings = []
    files = tracked_files()
    assert len(files) > 50
    for name in files:
        if SECRET_FILE_NAMES.search(name):
            findings.append((name, "a secret's file name"))
        path = REPOSITORY / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode(errors="replace")
        for kind, pattern in SECRET_PATTERNS.items():
            if kind == "password in a URL" and name in URL_PASSWORD_HOMES:
                continue
            findings += [(name, kind, m.group(0)[:40]) for m in pattern.finditer(text)]
        for match in ASSIGNED.finditer(text):
            value = match.group(1)
            looks_random = entropy(value) >= 4.2 and re.search(r"\d", value) and re.search(r"[A-Za-z]", value)
            if looks_random and name not in DEV_SECRET_HOMES:
                findings.append((name, "random-looking secret", match.group(0)[:60]))
        if name not in DEV_SECRET_HOMES:
            for secret in (DEVELOPMENT_JWT_SECRET, DEVELOPMENT_CREDENTIALS_KEY):
                if secret in text:
                    findings.append((name, "development secret outside the settings", secret[:12]))
    assert not findings, findings


def test_the_scan_finds_what_it_looks_for():
    """The control: each pattern catches a sample (built here so this file holds none itself)."""
    samples = {
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
        "AWS access key": "AKIA" + "Q" * 16,
        "GitHub token": "ghp_" + "a1" * 18,
        "JWT": "eyJ" + "a" * 12 + ".eyJ" + "b" * 12 + "." + "c" * 12,
        "password in a URL": "postgresql://" + "admin:hunter2" + "@db/prod",
    }
    for kind, sample in samples.items():
        assert SECRET_PATTERNS[kind].search(sample), kind
    assigned = ASSIGNED.search('API_TOKEN = "' + "q8ZxN2vL7mK4pR9tW3yB6cF1hJ5gD0sA" + '"')
    assert assigned and entropy(assigned.group(1)) >= 4.2
    assert SECRET_FILE_NAMES.search("deploy/.env.production") and SECRET_FILE_NAMES.search("certs/server.pem")
