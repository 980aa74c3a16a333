"""schemathesis against the REST API through Envoy, driven by the OpenAPI document the gateway serves.

Every operation gets hypothesis-generated requests in both of schemathesis' modes (positive: what the
schema allows; negative: what it does not), each sent as one of: the MASTER, the FOLLOWER, no token,
or a garbage token. The invariant is the platform's: never a 5xx. The answers are also checked
against the document itself (status codes, content types, response schemas), so the document stays
true to what the gateway does.

Runs synchronously (schemathesis and hypothesis are synchronous): the tests call it in a thread.
"""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.support import Actor, Tally, known_unfixed

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CALLERS = ("master", "master", "follower", "anonymous", "garbage")
STREAMING = "OrderService_WatchOrders"


def _headers(caller: str, actors: dict[str, Actor]) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller == "garbage":
        return {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bm90LWEtc2lnbmF0dXJl"}
    return actors[caller].headers()


def run_rest_fuzz(base_url: str, actors: dict[str, Actor], examples: int, *, derandomize: bool) -> Tally:
    tally = Tally("REST via Envoy (schemathesis)")
    document = requests.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        raw = operation.definition.raw
        modes = [GenerationMode.POSITIVE]
        if raw.get("parameters") or raw.get("requestBody"):
            modes.append(GenerationMode.NEGATIVE)
        else:
            tally.skipped.append(f"{label} (negative: no parameters or body)")
        for mode in modes:
            _fuzz_operation(operation, label, mode, base_url, actors, examples, derandomize, session, tally)
    return tally


def _fuzz_operation(operation, label, mode, base_url, actors, examples, derandomize, session, tally) -> None:
    operation_id = operation.definition.raw.get("operationId")
    streaming = operation_id == STREAMING

    @settings(
        max_examples=max(1, examples // 2),
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), caller=st.sampled_from(CALLERS))
    def run(case, caller: str) -> None:
        headers = _headers(caller, actors)
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if streaming:
            _call_stream(case, base_url, headers, label, tally)
            return
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        except requests.RequestException as exc:
            tally.record(label, "transport-error", f"{type(exc).__name__}: {exc} for {_curl(case, headers, base_url)}")
            return
        outcome = str(response.status_code)
        failure = None
        if known_unfixed(operation.path, response.status_code, response.text):
            tally.record(label, f"{outcome}-known")
            return
        if response.status_code >= 500:
            failure = f"{response.status_code} {response.text[:300]!r} for {_curl(case, headers, base_url)}"
        else:
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:  # noqa: BLE001 - schemathesis' Failure or FailureGroup
                failure = f"{outcome} does not match the document: {_failure_summary(exc)} for {_curl(case, headers, base_url)}"
                outcome = f"{outcome}-mismatch"
        tally.record(label, outcome, failure)

    try:
        run()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body.
        tally.skipped.append(f"{label} ({mode.value})")


def _call_stream(case, base_url: str, headers: dict[str, str], label: str, tally: Tally) -> None:
    # Server-Sent Events stay open: take the status line and, when it is 200, the first event.
    # The answer's headers come with the first message (a heartbeat may be seconds away): a stream
    # still silent after the read timeout is open and well, not a failure.
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    status, first = None, b""
    try:
        with requests.request(**kwargs, stream=True, timeout=(10, 1)) as response:
            status = response.status_code
            if status == 200:
                first = next(response.iter_content(chunk_size=None), b"")
    except requests.exceptions.ReadTimeout:
        tally.record(label, f"{status or 'headers'}-pending")
        return
    except requests.RequestException as exc:
        tally.record(label, "transport-error", f"{type(exc).__name__}: {exc}")
        return
    failure = None
    if status >= 500:
        failure = f"{status} for {_curl(case, headers, base_url)}"
    elif status == 200 and not first.startswith(b"data: "):
        failure = f"stream did not start with an SSE event: {first[:200]!r}"
    tally.record(label, str(status), failure)


def _curl(case, headers: dict[str, str], base_url: str) -> str:
    shown = {k: ("Bearer <token>" if k == "Authorization" else v) for k, v in headers.items()}
    return case.as_curl_command(headers=shown, base_url=base_url)


def _failure_summary(exc: BaseException) -> str:
    found = list(getattr(exc, "exceptions", None) or [exc])
    return "; ".join(f"{getattr(e, 'title', type(e).__name__)}: {str(e).strip().splitlines()[0][:300]}" for e in found)
