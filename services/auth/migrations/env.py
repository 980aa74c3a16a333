from copytrade.core.alembic_env import run
from services.auth.models import SCHEMA, Base

run(Base.metadata, SCHEMA)
