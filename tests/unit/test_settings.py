import pytest
from cryptography.fernet import Fernet

from copytrade.core.settings import DEVELOPMENT_JWT_SECRET, SettingsError, load_settings


def test_defaults_load(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.grpc_target("orders") == "127.0.0.1:50052"


def test_plain_libpq_url_gets_the_asyncpg_driver(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@db:5432/test")
    assert load_settings().database_url == "postgresql+asyncpg://postgres@db:5432/test"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("REDIS_URL", "http://x", "REDIS_URL"),
        ("NATS_URL", "http://x", "NATS_URL"),
        ("AUTH_GRPC_PORT", "not-a-port", "AUTH_GRPC_PORT"),
        ("ENVOY_PORT", "70000", "ENVOY_PORT"),
        ("JWT_SECRET", "short", "JWT_SECRET"),
        ("BCRYPT_ROUNDS", "2", "BCRYPT_ROUNDS"),
        ("CREDENTIALS_KEY", "not-a-fernet-key", "CREDENTIALS_KEY"),
        ("BROKER_HTTP_CLIENT", "requests", "BROKER_HTTP_CLIENT"),
    ],
)
def test_bad_value_fails_fast_naming_the_variable(monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert named in str(raised.value)


def test_production_refuses_the_development_secret(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "JWT_SECRET" in str(raised.value)


def test_production_refuses_the_development_credentials_key(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "a-production-secret-that-is-long-enough-123")
    monkeypatch.delenv("CREDENTIALS_KEY", raising=False)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "CREDENTIALS_KEY" in str(raised.value)


def test_production_starts_with_its_own_secrets(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "a-production-secret-that-is-long-enough-123")
    monkeypatch.setenv("CREDENTIALS_KEY", Fernet.generate_key().decode())
    settings = load_settings()
    assert settings.jwt_secret != DEVELOPMENT_JWT_SECRET
