"""`python -m mock_iifl`: both listeners over one shared state, until SIGTERM or Ctrl-C.

Ports come from MOCK_IIFL_PORT (HTTP/1.1) and MOCK_IIFL_H2_PORT (h2c), as in copytrade's settings;
the address from MOCK_IIFL_HOST (default 127.0.0.1; the container image sets 0.0.0.0). Flags
override all three; port 0 picks a free port, and the ports in use are logged at start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

import uvloop

from copytrade.core import heap
from copytrade.core.settings import load_settings
from mock_iifl.app import MockApp
from mock_iifl.http1 import Http1Listener
from mock_iifl.http2 import Http2Listener
from mock_iifl.instruments import DEFAULT_DIR

HOST_ENV = "MOCK_IIFL_HOST"
log = logging.getLogger("mock_iifl")


def parse_args() -> argparse.Namespace:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m mock_iifl", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, "127.0.0.1"))
    parser.add_argument("--port", type=int, default=settings.mock_iifl_port)
    parser.add_argument("--h2-port", type=int, default=settings.mock_iifl_h2_port)
    parser.add_argument("--instruments", type=Path, default=DEFAULT_DIR, help="the instrument master folder")
    return parser.parse_args()


async def serve(args: argparse.Namespace) -> None:
    app = MockApp.create(args.instruments)
    http1 = Http1Listener(app, args.host, args.port)
    http2 = Http2Listener(app, args.host, args.h2_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port, h2_port = await http1.start(), await http2.start()
    log.info("mock IIFL serving: HTTP/1.1 on %s:%d, h2c on %s:%d", args.host, port, args.host, h2_port)
    await stop.wait()
    log.info("mock IIFL stopping")
    await http2.stop()
    await http1.stop()
    for order in app.state.all_orders():
        order.stop_timers()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args()
    heap.freeze_survivors()  # its books only grow: collections must not walk them again and again
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
