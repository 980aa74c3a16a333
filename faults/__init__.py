"""The fault suite's harness (issue 6): the real local stack, faults injected into its processes and
the mock broker, and the invariant checked against the mock's ground truth.

    stack       a LocalStack on embedded servers in a temp folder, with the fault suite's settings
    population  masters and followers (bench.population's Builder), each follower its own IIFL account
    invariant   replicator.follower_orders vs orders.orders vs /_mock/inspect?by_tag=1
    report      what each scenario injected and what the invariant said, printed at the end

Kill and restart of one process are LocalStack's own (`await stack.kill("replicator")`,
`await stack.restart("replicator")`). The scenarios are tests/faults/; `make faults` runs them all
at full size (FAULTS_FULL=1), `pytest tests/faults` runs the CI-sized subset.
"""
