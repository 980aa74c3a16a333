"""One typed settings object for every process, read from environment variables.

The same variables configure the local stack, the tests and docker-compose.yml. A bad value stops
the process at start with a message naming the variable (`SettingsError`), never later mid-request.
"""

from __future__ import annotations

import base64
import binascii
import functools
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VERSION = "0.2.0"
# The development secret is public (it is in this file); production refuses to start with it.
DEVELOPMENT_JWT_SECRET = "copytrade-development-secret-do-not-use-in-production"
# Likewise public: encrypts broker credentials in development only.
DEVELOPMENT_CREDENTIALS_KEY = "Y29weXRyYWRlLWRldmVsb3BtZW50LWtleS0zMi1ieXQ="
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class Environment(str, Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(SystemExit):
    """Raised at start-up for a missing or malformed setting; exits with the reason."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")

    # Backing servers. Empty means "start the embedded one" (the local stack fills them in).
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:15432/copytrade"
    redis_url: str = "redis://127.0.0.1:16379/0"
    # One NATS server, or several of a cluster comma-separated (the client fails over between them).
    nats_url: str = "nats://127.0.0.1:14222"
    # Copies JetStream keeps of each stream: 1 on one server, 3 on a three-node cluster (survives a node).
    nats_stream_replicas: int = Field(1, ge=1, le=5)
    database_pool_size: int = Field(10, ge=1, le=200)

    # Tokens.
    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_issuer: str = "copytrade-auth"
    jwt_audience: str = "copytrade-api"
    access_token_ttl_seconds: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(7 * 86_400, ge=60, le=90 * 86_400)
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    # Failed logins allowed per window before answering RESOURCE_EXHAUSTED.
    login_failures_per_username: int = Field(5, ge=1)
    login_failures_per_address: int = Field(20, ge=1)
    login_failure_window_seconds: int = Field(60, ge=1)

    # gRPC services: each listens on grpc_bind_host:<its port>; the others reach it at <its target>.
    grpc_bind_host: str = "127.0.0.1"
    auth_grpc_port: int = Field(50051, ge=1, le=65535)
    orders_grpc_port: int = Field(50052, ge=1, le=65535)
    replicator_grpc_port: int = Field(50053, ge=1, le=65535)
    broker_gateway_grpc_port: int = Field(50054, ge=1, le=65535)
    auth_grpc_target: str = ""
    orders_grpc_target: str = ""
    replicator_grpc_target: str = ""
    broker_gateway_grpc_target: str = ""
    # Prometheus metrics: each service serves GET /metrics on grpc_bind_host:<its metrics port>; 0 turns
    # it off. Extra replicas of the local stack get ports of their own (stack/apps.py).
    auth_metrics_port: int = Field(19101, ge=0, le=65535)
    orders_metrics_port: int = Field(19102, ge=0, le=65535)
    replicator_metrics_port: int = Field(19103, ge=0, le=65535)
    broker_gateway_metrics_port: int = Field(19104, ge=0, le=65535)
    orders_projection_metrics_port: int = Field(19105, ge=0, le=65535)
    # False when a separate `python -m services.orders.projector` applies ORDER_UPDATES to the
    # orders read model (the local stack runs one, so PlaceOrder's event loop never waits behind a
    # projection batch); True makes the orders service do it itself.
    orders_projection_in_process: bool = True
    # CPython's young-generation collection threshold in every service (copytrade/core/heap.py);
    # 0 keeps the interpreter's default of 700.
    gc_gen0_threshold: int = Field(50_000, ge=0, le=10_000_000)
    # Linux CPU scheduling policy of the processes that do the fan-out (the replicator, the broker
    # gateway, the orders projection; copytrade/core/scheduling.py): idle lets the accept path
    # preempt them on a machine they share. The local stack sets idle; normal leaves them alone.
    fanout_sched_policy: str = Field("normal", pattern="^(normal|batch|idle)$")
    # Seconds between health NOT_SERVING and the server's stop, so Envoy's health checks notice.
    shutdown_drain_seconds: float = Field(3.0, ge=0, le=60)
    shutdown_grace_seconds: float = Field(5.0, ge=0, le=120)

    # Broker gateway. The base URLs default to the mock IIFL server of the local stack; point them at
    # https://api.iiflcapital.com/v1 and https://ttblaze.iifl.com/interactive for the real brokers.
    iifl_v1_base_url: str = ""
    xts_base_url: str = ""
    # The exchange algo id SEBI's retail-algo framework requires on every API order.
    broker_algo_id: str = Field("COPYTRADE01", pattern=r"^[A-Za-z0-9]{1,20}$")
    # Fernet key (urlsafe base64 of 32 bytes) that encrypts broker credentials at rest.
    credentials_key: str = DEVELOPMENT_CREDENTIALS_KEY
    # The static IP the platform's broker calls leave from, which each user whitelists with IIFL
    # (SEBI's static-IP rule); shown to users when they link an account.
    broker_egress_ip: str = ""
    # Where a user logs in at IIFL Capital each day to get the auth code a relink needs.
    iifl_v1_login_url: str = ""
    # Market protection put on a MARKET order that names none (SEBI requires a non-zero one).
    default_market_protection_percent: str = Field("2", pattern=r"^\d{1,2}(\.\d{1,2})?$")
    # Connections to each broker opened at start, so the first fan-out does not pay for handshakes.
    broker_warm_connections: int = Field(64, ge=0, le=10_000)
    # Requests at one broker at once, per process (services/broker_gateway/brokers/http.py Bounded).
    # A fan-out of 5,000 goes out whole, as the bare-limit client sends it: at 1,000 it went out in
    # waves of a broker round trip each (make bench, N = 5,000: fan-out 1,105 -> 920 ms; 2,500: 950).
    broker_max_in_flight: int = Field(5_000, ge=1, le=20_000)
    # Replicator: a fan-out is sent as up to fanout_streams ExecuteFanout streams of at least
    # fanout_stream_min_orders copies each, spread round-robin over the broker gateway replicas.
    # Even with one gateway, the first stream's copies go out before the others' accounts are read.
    fanout_streams: int = Field(4, ge=1, le=64)
    fanout_stream_min_orders: int = Field(100, ge=1, le=20_000)
    # A fan-out with more than twice this many copies to send records and sends this many first,
    # and records the rest while they are on their way. 15 rather than 50: first copy at the broker
    # 18.7 -> 15.6 ms at N = 100 and 18.0 -> 15.3 ms at N = 500, for a fan-out of 100 ~5% longer.
    fanout_first_part: int = Field(15, ge=1, le=20_000)
    # services/broker_gateway/brokers/http.py: httptools costs a third of aiohttp's CPU per order.
    broker_http_client: str = Field("httptools", pattern="^(httptools|aiohttp|httpx)$")
    broker_request_timeout_seconds: float = Field(5.0, gt=0, le=60)
    # How long one order may take in all, lookups and retries included, before it is reported UNKNOWN.
    broker_order_deadline_seconds: float = Field(20.0, gt=0, le=300)
    broker_orders_per_second: float = Field(10.0, gt=0, le=1000)
    broker_reads_per_second: float = Field(3.0, gt=0, le=1000)
    # The mock IIFL server of the local stack and the tests: HTTP/1.1 and an h2c listener.
    mock_iifl_port: int = Field(18801, ge=1, le=65535)
    mock_iifl_h2_port: int = Field(18802, ge=1, le=65535)

    # Traces: the OTLP/gRPC collector every service and Envoy export spans to (the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://127.0.0.1:4317). Empty: tracing is off, at no cost.
    otel_exporter_otlp_endpoint: str = Field("", pattern=r"^(https?://[^\s/]+/?)?$")

    # Envoy gateway.
    envoy_port: int = Field(8000, ge=1, le=65535)
    envoy_admin_port: int = Field(9901, ge=1, le=65535)

    # Embedded servers of the local stack. All default ports sit below Linux's ephemeral range
    # (32768-60999), where an outgoing connection could take one first.
    data_dir: Path = PROJECT_ROOT / ".data"
    postgres_port: int = Field(15432, ge=1, le=65535)
    redis_port: int = Field(16379, ge=1, le=65535)
    nats_port: int = Field(14222, ge=1, le=65535)
    nats_monitor_port: int = Field(18222, ge=1, le=65535)

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        # Accept the plain libpq form that operators and managed databases hand out.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                value = "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")
        base, _, query = value.partition("?")
        if "sslmode=" in query:
            # libpq's ?sslmode=require is asyncpg's ssl argument, with the same values.
            pairs = parse_qsl(query, keep_blank_values=True)
            params = [("ssl" if key == "sslmode" else key, item) for key, item in pairs]
            value = f"{base}?{urlencode(params)}"
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        if not all(part.strip().startswith(("nats://", "tls://")) for part in value.split(",")):
            raise ValueError("must be nats:// or tls:// URLs, comma-separated")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_length(cls, value: str) -> str:
        if len(value.encode()) < 32:
            raise ValueError("must be at least 32 bytes for HS256")
        return value

    @field_validator("credentials_key")
    @classmethod
    def _fernet_key(cls, value: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(value.encode())
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise ValueError("must be urlsafe base64 of 32 bytes (python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')")
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.jwt_secret == DEVELOPMENT_JWT_SECRET:
                raise ValueError(
                    "JWT_SECRET is the public development default; set a secret of your own in production"
                )
            if self.credentials_key == DEVELOPMENT_CREDENTIALS_KEY:
                raise ValueError(
                    "CREDENTIALS_KEY is the public development default; set a key of your own in production"
                )
        return self

    def broker_base_url(self, dialect: str) -> str:
        """Where the broker of a dialect (`IIFL_CAPITAL_V1` or `XTS`) answers."""
        mock = f"http://127.0.0.1:{self.mock_iifl_port}"
        if dialect == "IIFL_CAPITAL_V1":
            return (self.iifl_v1_base_url or f"{mock}/v1").rstrip("/")
        if dialect == "XTS":
            return (self.xts_base_url or f"{mock}/interactive").rstrip("/")
        raise ValueError(f"unknown broker dialect {dialect!r}")

    def broker_login_url(self, dialect: str) -> str:
        """Where a user of a dialect logs in again (only IIFL Capital needs the user's own login)."""
        if dialect != "IIFL_CAPITAL_V1":
            return ""
        return self.iifl_v1_login_url or f"http://127.0.0.1:{self.mock_iifl_port}/_mock/login"

    def grpc_target(self, service: str) -> str:
        """Where the named service (`auth`, `orders`, `replicator`, `broker_gateway`) is reached."""
        explicit = getattr(self, f"{service}_grpc_target")
        return explicit or f"127.0.0.1:{getattr(self, f'{service}_grpc_port')}"

    def grpc_port(self, service: str) -> int:
        return int(getattr(self, f"{service}_grpc_port"))

    def metrics_port(self, service: str) -> int:
        """The port of the service's /metrics endpoint (0: none)."""
        return int(getattr(self, f"{service}_metrics_port"))


def load_settings() -> Settings:
    """Read the environment, or exit naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper() or "settings"
            problems.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
