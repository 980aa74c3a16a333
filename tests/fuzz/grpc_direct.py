"""Hypothesis-generated requests straight at each service's own gRPC port, internal services included.

For every method of every service in the generated API package, messages come from
tests.fuzz.messages, each sent as one of: no token, a garbage token, the MASTER, the FOLLOWER, or a
SERVICE token (the internal callers' role). The invariant: never UNKNOWN, INTERNAL or DATA_LOSS (a
bug, never the answer to bad input), and never UNAVAILABLE (a service that fell over). Server
streams are read for a moment and then cancelled, so a long-lived stream is not an error.

Synchronous (grpc's blocking API under hypothesis): the tests call it in a thread.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from copytrade.core.api_catalog import all_service_names
from copytrade.core.settings import Settings
from gateway.services import PACKAGE_CLUSTERS
from tests.fuzz.messages import message_class, messages
from tests.fuzz.support import Actor, Tally, known_unfixed_grpc, service_token

CALLERS = ("master", "follower", "service", "anonymous", "garbage")
FAILING_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNAVAILABLE}
UNARY_TIMEOUT = 20.0
STREAM_TIMEOUT = 2.0
STREAM_MESSAGES = 3



def service_descriptor(full_name: str) -> ServiceDescriptor:
    package, _, name = full_name.rpartition(".")
    segment = package.split(".")[1]
    module = importlib.import_module(f"copytrade.{segment}.v1.{segment}_pb2")
    return module.DESCRIPTOR.services_by_name[name]


def process_of(full_service: str) -> str:
    return PACKAGE_CLUSTERS[full_service.split(".")[1]]


def _metadata(caller: str, actors: dict[str, Actor], settings_: Settings) -> list[tuple[str, str]]:
    if caller == "anonymous":
        return []
    if caller == "garbage":
        return [("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bm90LWEtc2lnbmF0dXJl")]
    if caller == "service":
        return [("authorization", f"Bearer {service_token(settings_)}")]
    return [("authorization", f"Bearer {actors[caller].token()}")]


def run_grpc_fuzz(
    targets: dict[str, str],
    actors: dict[str, Actor],
    settings_: Settings,
    examples: int,
    *,
    derandomize: bool,
    services: Iterable[str] | None = None,
) -> Tally:
    """`targets` maps a process name (auth, orders, ...) to its host:port."""
    tally = Tally("gRPC direct (hypothesis)")
    channels = {name: grpc.insecure_channel(target) for name, target in targets.items()}
    try:
        for full_service in services or all_service_names():
            channel = channels[process_of(full_service)]
            for method in service_descriptor(full_service).methods:
                _fuzz_method(channel, full_service, method, actors, settings_, examples, derandomize, tally)
    finally:
        for channel in channels.values():
            channel.close()
    return tally


def payloads(descriptor) -> st.SearchStrategy[bytes]:
    """Serialized messages (8 in 10), bytes of a serialized message cut or altered, or any bytes."""
    serialized = messages(descriptor).map(lambda message: message.SerializeToString())
    cut = serialized.flatmap(lambda data: st.integers(0, max(0, len(data) - 1)).map(lambda n: data[:n]))
    altered = st.tuples(serialized, st.binary(min_size=1, max_size=8)).map(lambda pair: pair[1] + pair[0][1:])
    return st.integers(0, 9).flatmap(
        lambda k: altered if k == 0 else cut if k == 1 else st.binary(max_size=64) if k == 2 else serialized
    )


def _parsed(request_class, data: bytes):
    try:
        return request_class.FromString(data)
    except Exception:  # noqa: BLE001 - not a message of this type: shown raw
        return None


def _fuzz_method(channel, full_service, method: MethodDescriptor, actors, settings_, examples, derandomize, tally) -> None:
    path = f"/{full_service}/{method.name}"
    request_class = message_class(method.input_type)
    response_class = message_class(method.output_type)
    # Requests go as bytes: mostly serialized messages, sometimes bytes no message serializes to.
    if method.server_streaming:
        call = channel.unary_stream(path, request_serializer=bytes, response_deserializer=response_class.FromString)
    else:
        call = channel.unary_unary(path, request_serializer=bytes, response_deserializer=response_class.FromString)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=payloads(method.input_type), caller=st.sampled_from(CALLERS))
    def run(request: bytes, caller: str) -> None:
        metadata = _metadata(caller, actors, settings_)
        code = grpc.StatusCode.OK
        details = ""
        try:
            if method.server_streaming:
                stream = call(request, metadata=metadata, timeout=STREAM_TIMEOUT)
                try:
                    for count, _ in enumerate(stream, start=1):
                        if count >= STREAM_MESSAGES:
                            break
                finally:
                    stream.cancel()
            else:
                call(request, metadata=metadata, timeout=UNARY_TIMEOUT)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        if method.server_streaming and code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            code = grpc.StatusCode.OK  # still streaming when the client hung up: fine
        outcome = code.name
        if code in FAILING_CODES and known_unfixed_grpc(path, outcome, details):
            tally.record(path, f"{outcome}-known")
            return
        failure = None
        if code in FAILING_CODES or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not method.server_streaming):
            parsed = _parsed(request_class, request)
            shown = (str(parsed).replace("\n", " ") if parsed is not None else f"raw {request!r}")[:400]
            failure = f"{outcome} {details[:200]!r} as {caller} for {{{shown}}}"
        tally.record(path, outcome, failure)

    run()
