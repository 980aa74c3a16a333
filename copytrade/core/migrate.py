"""Bring every service's schema up to date: `python -m copytrade.core.migrate`.

Run once before the services start (the local stack and docker-compose's `migrate` step do).
Each service's Alembic scripts live in `services/<name>/migrations/`.
"""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config

from copytrade.core.settings import PROJECT_ROOT, Settings, load_settings

SERVICES_WITH_SCHEMAS = ("auth", "broker_gateway", "orders", "replicator")


def alembic_config(settings: Settings, service: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "services" / service / "migrations"))
    # ConfigParser interpolation would eat a literal % in a password.
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade_all(settings: Settings) -> None:
    for service in SERVICES_WITH_SCHEMAS:
        command.upgrade(alembic_config(settings, service), "head")


def main() -> None:
    settings = load_settings()
    try:
        upgrade_all(settings)
    except OSError as exc:
        sys.exit(f"migrations failed: cannot reach the database: {exc}")
    print(f"schemas up to date: {', '.join(SERVICES_WITH_SCHEMAS)}")


if __name__ == "__main__":
    main()
