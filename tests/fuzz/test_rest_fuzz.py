"""schemathesis through Envoy: never a 5xx, and every answer as the OpenAPI document describes it.

A short run here (FUZZ_EXAMPLES, default tests.fuzz.support.CI_EXAMPLES per operation); `make fuzz`
runs the long one.
"""

from __future__ import annotations

import asyncio

from tests.fuzz.rest import run_rest_fuzz
from tests.fuzz.support import examples_per_target, is_full_run


async def test_rest_api_through_envoy_never_fails_on_generated_requests(stack, actors, capsys, tallies):
    examples = examples_per_target()
    tally = await asyncio.to_thread(
        run_rest_fuzz, stack.envoy_url, actors, examples, derandomize=not is_full_run()
    )
    tallies.append(tally)
    with capsys.disabled():
        print("\n" + tally.report())
    assert tally.inputs >= examples, tally.report()
    assert not tally.failures, tally.report()
