from copytrade.core.alembic_env import run
from services.replicator.models import SCHEMA, Base

run(Base.metadata, SCHEMA)
