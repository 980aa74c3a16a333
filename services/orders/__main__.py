from copytrade.core.runner import run_service
from services.orders.server import serve

run_service("orders", serve)
