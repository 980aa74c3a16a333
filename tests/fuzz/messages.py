"""Hypothesis strategies for any protobuf message, read from its descriptor.

Every field may be left out or set; values lean on the edges: 64-bit extremes, negative numbers,
NaN and infinities, empty, huge and odd Unicode strings, enum numbers no enum declares, long lists,
and the platform's own vocabulary (symbols, sides, roles, decimals, timestamps) in right and wrong
forms, so generated requests get past the first check often enough to reach the deeper ones.
"""

from __future__ import annotations

import functools
import math

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

MAX_DEPTH = 3
INT64_EDGES = (0, 1, -1, 2, 7, 50, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63), 10**12)
UINT64_EDGES = (0, 1, 2**32, 2**63, 2**64 - 1)
INT32_EDGES = (0, 1, -1, 2, 50, 1000, 1001, 2**31 - 1, -(2**31))
FLOAT_EDGES = (0.0, -0.0, 0.05, 0.1, 1.0, 2450.5, 2450.55, -1.0, 1e-9, 1e15, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf)
VOCABULARY = (
    # instruments, sides, order types, products, exchanges, validities
    "RELIANCE", "reliance", "RELIANCE-EQ", "INFY", "NIFTY26JANFUT", "BANKNIFTY", "NOPE", "BUY", "SELL", "buy", "HOLD",
    "MARKET", "LIMIT", "SL", "SL-M", "SLM", "STOP", "CNC", "NRML", "MIS", "NSE", "BSE", "NFO", "BFO", "MCX",
    "DAY", "IOC", "GTC",
    # roles, strategies, dialects, statuses, outcomes
    "MASTER", "FOLLOWER", "ADMIN", "SERVICE", "master", "FIXED_RATIO", "PERCENTAGE", "FIXED_QUANTITY", "FIXED",
    "XTS", "IIFL_V1", "IIFL", "PENDING", "OPEN", "EXECUTED", "REJECTED", "CANCELLED", "FAILED", "SKIPPED",
    "PLACED", "ACTIVE", "PAUSED", "LINKED", "NEEDS_RELOGIN",
    # decimals and times, right and wrong
    "1", "0", "-1", "1.5", "0.05", "2450.55", "1e10", "NaN", "Infinity", "-0", "0001", "99999999999999999999999",
    "12345678901234567890.123456789", "2026-04-01T00:00:00Z", "2026-13-45T99:99:99Z", "yesterday", "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
    # ids, tokens, names
    "user@example.com", "@", "a@b", "a" * 33, "x" * 101, "Password123!", "short", "eyJhbGciOiJub25lIn0.e30.",
    "AAAA", "!!!!", "bm9wZQ==", "openapi.json", "swagger-ui.css", "../../pyproject.toml", "%00", "' OR '1'='1",
    "Robert'); DROP TABLE users;--", "\x00", " ", "\t\n", "\u202e\u0645\u0631\u062d\u0628\u0627", "\U0001f600" * 10,
    "\ufeff", "\u0000abc", "%s%n%x", "{{7*7}}", "${jndi:ldap://x}",
)
_LONG_TEXT = ("A" * 5000, "\U0001f4b8" * 3000, "0" * 400)


@functools.cache
def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(VOCABULARY),
        st.text(max_size=40),
        st.text(st.characters(codec="utf-8", categories=("Lu", "Ll", "Nd", "Pd", "Zs", "Cf", "So", "Mn")), max_size=20),
        st.sampled_from(_LONG_TEXT),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[object]:
    t = FieldDescriptor
    kind = field.type
    if kind in (t.TYPE_INT64, t.TYPE_SINT64, t.TYPE_SFIXED64):
        return st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1), st.integers(-3, 60))
    if kind in (t.TYPE_UINT64, t.TYPE_FIXED64):
        return st.one_of(st.sampled_from(UINT64_EDGES), st.integers(0, 2**64 - 1))
    if kind in (t.TYPE_INT32, t.TYPE_SINT32, t.TYPE_SFIXED32):
        return st.one_of(st.sampled_from(INT32_EDGES), st.integers(-(2**31), 2**31 - 1))
    if kind in (t.TYPE_UINT32, t.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind == t.TYPE_DOUBLE:
        return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats())
    if kind == t.TYPE_FLOAT:
        return st.one_of(st.sampled_from(FLOAT_EDGES[:9]), st.floats(width=32))
    if kind == t.TYPE_BOOL:
        return st.booleans()
    if kind == t.TYPE_STRING:
        return strings()
    if kind == t.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == t.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        # Open enums: numbers no value declares arrive as themselves.
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _repeated(element: st.SearchStrategy[object]) -> st.SearchStrategy[list[object]]:
    # Mostly short lists; now and then one just over the platform's 1,000-item limits.
    return st.integers(0, 15).flatmap(
        lambda k: st.lists(element, min_size=995, max_size=1005) if k == 0 else st.lists(element, max_size=5)
    )


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[object] | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        if entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            value_strategy = _field_value(value, depth + 1)
            if value_strategy is None:
                return None
            return st.dictionaries(_scalar(key), value_strategy, max_size=4)
        if depth >= MAX_DEPTH:
            return None
        single = messages(entry, depth + 1)
        if field.is_repeated:
            return st.lists(single, max_size=4) if depth else _repeated(single)
        return single
    single = _scalar(field)
    if field.is_repeated:
        return _repeated(single)
    return single


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type: any subset of fields set (at most one per oneof), values as above."""
    return _messages(descriptor, depth)


@functools.cache
def _messages(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
    optional = {}
    for field in descriptor.fields:
        strategy = _field_value(field, depth)
        if strategy is not None:
            optional[field.name] = strategy
    cls = message_class(descriptor)
    return st.fixed_dictionaries({}, optional=optional).map(functools.partial(_build, cls, descriptor))


def _build(cls: type[Message], descriptor: Descriptor, values: dict[str, object]) -> Message:
    message = cls()
    chosen_oneofs: set[str] = set()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in chosen_oneofs:
                continue
            chosen_oneofs.add(oneof.name)
        target = getattr(message, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            for key, item in value.items():  # type: ignore[union-attr]
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target.extend(value)  # type: ignore[arg-type]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(message, name, value)
    return message
