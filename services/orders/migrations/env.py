from copytrade.core.alembic_env import run
from services.orders.models import SCHEMA, Base

run(Base.metadata, SCHEMA)
