"""A mock IIFL broker: both live IIFL order APIs, with the faults a real broker has, and ground truth.

Run it: `python -m mock_iifl` (the local stack starts it with the services). It listens on
127.0.0.1 (MOCK_IIFL_HOST, or --host; the container sets 0.0.0.0):

    MOCK_IIFL_PORT     (18801)  HTTP/1.1 keep-alive, aiohttp         http1.py
    MOCK_IIFL_H2_PORT  (18802)  HTTP/2 cleartext: prior knowledge or Upgrade: h2c    http2.py

Both serve the same state and the same paths:

    /v1/...            IIFL Capital "Markets API" v1     dialects/iifl_v1.py (codes and formats there)
    /interactive/...   IIFL Blaze, Symphony XTS          dialects/xts.py
    /_mock/...         control and inspection (below)    control.py

so `settings.broker_base_url("IIFL_CAPITAL_V1")` is `http://127.0.0.1:18801/v1` and XTS's is
`http://127.0.0.1:18801/interactive`. Behaviour follows ../shared/IIFL_API.md; where IIFL publishes
nothing (some error codes, XTS rate limits) the dialect modules say what the mock chose.

Every broker call goes through one pipeline (dialects/common.py): route, session, rate limit counted
on arrival, latency, then 429 / auth error / injected fault / the real answer.

Logging in
----------
IIFL Capital v1 (browser login, then a checksum):
  1. Register, or let auto-provisioning do it: `POST /_mock/accounts {"dialect": "iifl_v1",
     "client_id": "C1", "app_secret": "S"}` answers with an `auth_code`, as the browser redirect
     would. Each `POST /_mock/accounts/iifl_v1/C1/authcode` (or `POST /_mock/v1/authcode`) is a new
     daily browser login: a fresh one-time code; the previous unused one dies.
  2. `POST /v1/getusersession {"checkSum": sha256_hex("C1" + auth_code + "S")}` gives
     `{"status": "Ok", "message": "Success", "userSession": "<JWT>"}`; a wrong checksum, or a used or
     replaced code, gives HTTP 200 `{"status": "EC801", ...}`. The code is consumed on success.
  3. `Authorization: Bearer <userSession>`. A dead or unknown session gets HTTP 401.
  Auto-provisioning for v1 (how a benchmark logs in 5,000 accounts without registering them): the
  checksum cannot be inverted, so the mock must know the secret before the login. `POST
  /_mock/v1/authcode {"client_id": "C1", "app_secret": "S"}` registers an unknown client with that
  secret (one is made up and returned when app_secret is left out) and returns its auth code; for a
  known client it checks the secret (409 if it differs) and issues a new code.
XTS: `POST /interactive/user/session {"appKey", "secretKey", "source": "WEBAPI"}` gives
  `{"type": "success", "code": "s-user-0001", "result": {"token", "userID", ...}}`. In auto-provision
  mode an unknown appKey becomes an account on the spot (userID = appKey, the secret it came with);
  a known appKey with another secret is HTTP 400 e-user-0005. Then `Authorization: <token>`, no
  "Bearer"; a bad or dead token is HTTP 400 `e-session-0007` "Invalid Token".
Sessions die at midnight IST by the mock's clock (both dialects; XTS "one trading day"), or on demand.
An order tag deduplicates within the session that placed it: after a re-login the same tag places a
new order, and the inspection counts it as a duplicate.

Orders
------
Instruments, lots, ticks and freeze quantities come from data/instruments/ (README.md there).
Accepted -> OPEN (or TRIGGER_PENDING for SL) after lifecycle.ack_ms -> fills every
lifecycle.fill_ms at the reference price while the price allows: MARKET always, LIMIT when the
reference is at or better than the limit (else it rests), SL once the trigger is crossed, IOC
cancels what cannot fill at once. Cancel confirms after ack_ms; a fill may get there first. Margin:
DELIVERY buys block the full value, INTRADAY 20%, NORMAL on futures 15%; an account short of funds
gets its order accepted and then REJECTED ("RMS:Margin Exceeds ..."). Rules refused at once (EC004 /
e-orders-0005): lot, tick, freeze, unknown instrument, a MARKET v1 order without a non-zero
marketProtectionPercent, SLM / STOPMARKET, tags that are not 1-20 letters or digits, anything but
orderComplexity REGULAR. With enforce_ip_whitelist, writes from an address not in the account's
allowed_ips get EC500 (v1) / e-orders-0500 (XTS); reads are not restricted.
Status words: v1 "PUT ORDER REQ RECEIVED", "OPEN", "TRIGGER_PENDING", "PARTIALLY FILLED",
"COMPLETE", "REJECTED", "cancelled" (lower case, as IIFL's own sample: match case-insensitively);
XTS PendingNew, New, Replaced (modified), PartiallyFilled, Filled, Rejected, PendingCancel, Cancelled.

Control API (JSON, snake_case; no latency, rate limit or faults; errors are `{"error": "..."}`)
------------------------------------------------------------------------------------------------
GET  /_mock/health                      {"status": "ok"}: the readiness probe
POST /_mock/reset      {"config": {...sections}}?   forget accounts, sessions, orders, counters,
                                        prices and clock offset; start from the defaults (plus config)
GET  /_mock/config                      the run's configuration
POST /_mock/config     {"<section>": {...}, "<flag>": v}   replace the sections given (each one
                                        whole, defaults for what it omits); others stay
POST /_mock/accounts   {"dialect": "iifl_v1"|"xts", "client_id"?, "app_key"?, "app_secret"?,
                        "funds"?: "100000.00", "allowed_ips"?: ["1.2.3.4"], "config"?: {...},
                        "holdings"?: [{"exchange": "NSEEQ", "instrument_id": "2885",
                                       "quantity": 10, "average_price": "1400.00"}]}
                       -> 201 {"dialect", "client_id", "app_key", "app_secret", "funds",
                               "auth_code" (v1 only)}; 409 if the client (or XTS app key) exists.
                       client_id is required for v1; for XTS it is the userID (default: app_key).
                       Missing keys and secrets are made up; funds default to auto_provision_funds.
GET  /_mock/accounts                    {"accounts": [summary, ...]}
GET  /_mock/accounts/{dialect}/{client_id}            summary, with orders.by_tag
PATCH /_mock/accounts/{dialect}/{client_id}  {"funds"?, "allowed_ips"?, "config"?}   (config
                                        replaces the account's own sections; {} clears them)
GET  /_mock/accounts/{dialect}/{client_id}/orders     every order as received: order_id, tag,
                                        status, instrument, side, quantity, filled, cancelled, ...
POST /_mock/accounts/iifl_v1/{client_id}/authcode      {"client_id", "auth_code", "app_secret"}
POST /_mock/v1/authcode {"client_id", "app_secret"?, "app_key"?}   the same, auto-provisioning
POST /_mock/sessions/expire  {"dialect"?, "client_id"?}   {} expires every session -> {"expired": n}
GET  /_mock/clock, POST /_mock/clock {"set"?: "2026-11-24T23:59:00+05:30", "advance_seconds"?: 60}
GET  /_mock/prices, POST /_mock/prices {"NSEEQ:2885": "1420.50", ...}   reference prices (on tick);
                                        resting orders on those instruments are matched again
GET  /_mock/arrivals?tag_prefix=P      for the orders whose tag starts with P (one fan-out's):
      {"orders", "first_received_at", "last_received_at", "first_created_at", "last_created_at"}
      received: the request arrived (before the drawn latency); created: the order was made (after)
GET  /_mock/inspect?by_tag=1&dialect=&client_id=   ground truth:
      {"stats": {"requests": {"total", "iifl_v1.place", "xts.orders", "control", ...},
                 "rate_limited": {"total", "<dialect>.<group>": 429s served},
                 "faults": {"http_5xx", "timeout", "drop", "placed_before_fault", "ec003",
                            "rms_reject", "exchange_reject", "partial_fill"},
                 "events": {"sessions_created", "sessions_expired", "login_failures",
                            "auth_failures", "orders_created", "dedupe_hits", "ip_refusals",
                            "accounts_registered", "accounts_auto_provisioned"}},
       "totals": {"accounts", "orders", "duplicates", "place_items", "dedupe_hits", "refused",
                  "trades"},
       "accounts": [{"dialect", "client_id", "app_key", "auto_provisioned", "funds",
                     "utilized_margin", "sessions_created",
                     "orders": {"count", "duplicates", "untagged", "by_status", "by_tag"?},
                     "requests": {"place_items", "dedupe_hits", "refused", "modify", "cancel"},
                     "trades", "config"}]}
  orders.count is the orders really made; by_tag counts them per tag; duplicates is how many
  orders share a tag with an earlier one (across sessions). "Nothing lost, nothing doubled" is:
  every intended tag in by_tag with 1, and totals.duplicates == 0. place_items counts order items
  received, refused ones and deduplicated repeats included.

Configuration (config.py; per run, and per account for latency, rate_limits, faults)
----------------------------------------------------------------------------------
latency      {"kind": "uniform", "min_ms": 50, "max_ms": 150} (default) | {"kind": "fixed",
             "ms": 100} | {"kind": "zero"}
rate_limits  {"enabled": true, "per_second": {"iifl_v1.place": 20, ...}}   buckets: iifl_v1.<group>;
             xts.order_writes (place+modify+cancel), xts.orders, xts.trades, xts.positions,
             xts.session. Defaults (per session, calls in any 1 s window): v1 place/modify/cancel
             10, orders 3, order 10, trades 3, positions 3, holdings 3, limits 10, session 3,
             contracts 2 per segment; XTS order writes 10, reads 3. Over: HTTP 429, empty body.
faults       probabilities: http_5xx, timeout, drop (one draw per request to a group in
             applies_to, default every group but session and contracts), placed_before_fault
             (0.5: a write hit by one of those took effect first), http_5xx_statuses
             ([500, 502, 503, 504], HTML body), timeout_hold_seconds (30: held, then closed
             unanswered), ec003 (place/modify/cancel refused, nothing changed), rms_reject (place
             refused: EC101 / e-rms-0001), exchange_reject (accepted, then REJECTED in the book),
             partial_fill (fills in 2..lifecycle.partial_parts tranches). All 0 by default.
             A drop closes the HTTP/1.1 connection; on HTTP/2 it resets the stream (INTERNAL_ERROR).
lifecycle    {"ack_ms": 100, "fill_ms": 200, "partial_parts": 3}
dedupe (true), auto_provision (true), auto_provision_funds ("10000000.00"),
enforce_ip_whitelist (false), seed (null: a number makes every draw reproducible)
"""
