"""Fuzzing: generated requests against the whole platform, on a stack of its own.

- test_rest_fuzz: schemathesis through Envoy, from the served /openapi.json (positive and negative
  inputs, as MASTER, FOLLOWER, anonymous or with a garbage token): never a 5xx, and every answer as
  the document describes it.
- test_grpc_fuzz: hypothesis messages (tests.fuzz.messages) at every method of every service's own
  port, internal services included: never UNKNOWN/INTERNAL/DATA_LOSS/UNAVAILABLE; afterwards every
  process runs and every service is SERVING.
- test_odd_headers: header names and values HTTP allows and gRPC does not.
- test_api_docs: /openapi.json and Swagger UI at /docs.

`pytest tests/fuzz` is the short run (a few hundred inputs, derandomized so CI is repeatable);
`make fuzz` (FUZZ_EXAMPLES=160 per operation and method) is the long one, over 10,000 inputs, with
fresh random inputs each time. Each run prints what it tried and every failure found.
"""
