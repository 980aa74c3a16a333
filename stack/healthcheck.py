"""`python -m stack.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC health Check says SERVING.

docker-compose.yml's service health checks run this, so containers are judged by the same check the
local stack waits on.
"""

from __future__ import annotations

import asyncio
import sys

from stack.probes import grpc_serving


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    try:
        serving = asyncio.run(grpc_serving(argv[0], argv[1] if len(argv) == 2 else ""))
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with the reason shown
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not serving:
        print("unhealthy: not SERVING", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
