"""wizd's HTTP API: every job and queue operation a program in another language needs,
JSON under /v1, described by OpenAPI 3 at /v1/openapi.json, behind bearer tokens.

It is a client of the store like the CLI: each route calls the Python API (wizd.queue) and
never the store. The optional extra installs its stack: `pip install 'wizd[http]'`.
Served by `wizd serve` (wizd.http.server), or by a daemon itself (`serve_http = true`).
"""
