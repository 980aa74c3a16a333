from copytrade.core.runner import run_service
from services.auth.server import serve

run_service("auth", serve)
