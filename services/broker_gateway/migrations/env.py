from copytrade.core.alembic_env import run
from services.broker_gateway.models import SCHEMA, Base

run(Base.metadata, SCHEMA)
