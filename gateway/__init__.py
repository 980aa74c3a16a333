"""The Envoy gateway: one port for REST (transcoded), native gRPC and gRPC-Web.

`config` writes Envoy's bootstrap from code, `services` finds the services to route in the descriptor
set, `filters` holds the HTTP filter chain, and `process` runs Envoy and waits until it can serve.
`python -m gateway --out DIR` writes the configuration.
"""
