from copytrade.core.runner import run_service
from services.broker_gateway.server import serve

run_service("broker_gateway", serve, fanout=True)
