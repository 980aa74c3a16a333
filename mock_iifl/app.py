"""The mock as one request handler: /_mock to the control API, /v1 and /interactive to the dialects."""

from __future__ import annotations

from mock_iifl.control import PREFIX as CONTROL_PREFIX
from mock_iifl.control import Control
from mock_iifl.dialects import iifl_v1, xts
from mock_iifl.instruments import DEFAULT_DIR, InstrumentMaster
from mock_iifl.state import MockState
from mock_iifl.wire import Reply, Request, json_response


class MockApp:
    def __init__(self, state: MockState) -> None:
        self.state = state
        self.control = Control(state)
        self.v1 = iifl_v1.IiflV1(state)
        self.xts = xts.Xts(state)

    @classmethod
    def create(cls, instruments_dir=DEFAULT_DIR) -> MockApp:
        return cls(MockState(InstrumentMaster(instruments_dir)))

    async def handle(self, request: Request) -> Reply:
        path = request.path
        if path.startswith(iifl_v1.PREFIX):
            return await self.v1.handle(request)
        if path.startswith(xts.PREFIX):
            return await self.xts.handle(request)
        if path.startswith(CONTROL_PREFIX):
            return await self.control.handle(request)
        self.state.stats.requests["unknown"] += 1
        return json_response({"error": f"no endpoint {request.method} {path}"}, 404)
