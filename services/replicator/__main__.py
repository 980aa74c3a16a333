from copytrade.core.runner import run_service
from services.replicator.server import serve

run_service("replicator", serve, fanout=True)
