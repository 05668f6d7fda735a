"""Schema-driven fuzzing of the HTTP API (schemathesis) against a live server over both
stores: for every operation of /v1/openapi.json, generated requests (valid and invalid)
never get a 5xx, and every answer is one the schema documents (status, content type,
body); a request without the token or with a wrong one is refused. Runs in about 30 s a
store: EXAMPLES requests per operation, valid and invalid."""

from __future__ import annotations

from typing import Any

import anyio
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

import wizd
from tests.http_server import api_server, client

Q = "researcher"
EXAMPLES = 25  # generated requests per operation and mode: ~2 x 25 x 25 per store
WAIT_CAP = 0.2  # seconds: a generated long poll on an unfinished job holds up to 300 s

# Every check of schemathesis runs on every answer (no 5xx; status, content type, headers
# and body as documented; a missing or wrong token refused) but two, which judge the
# request rather than the answer, and misjudge this API's:
# - positive_data_acceptance wants every schema-valid request accepted, but the store keeps
#   rules a JSON Schema cannot state (times between 1970 and 9999, priorities 1-5 or their
#   names, depends_on and parent naming jobs that exist, payload size limits, printable
#   signal names), so a schema-valid request may rightly get a (documented) 422;
# - negative_data_rejection wants every schema-violating request refused, but a query
#   string carries only text: `queue=false` is the queue "false", an unknown parameter is
#   ignored as HTTP servers do; and the token this test sends undoes a generated request's
#   missing Authorization header.
NOT_CHECKED = [positive_data_acceptance, negative_data_rejection]


def admin_token(url: str) -> str:
    """A token in the store: the server then wants one from every caller."""

    async def main() -> str:
        async with wizd.connect(url) as q:
            _, secret = await q.create_token("admin", name="fuzz")
            return secret

    return anyio.run(main)


def cap_wait(case: Any) -> None:
    """POST /v1/jobs/{id}/wait holds the request up to `timeout` seconds (30 when left out,
    at most 300) while the job is unfinished: the test keeps it short. The request stays
    schema-valid; a `timeout` that is not a number (negative data) is left as it is."""
    if not case.operation.path.endswith("/wait"):
        return
    query = case.query if isinstance(case.query, dict) else {}
    timeout = query.get("timeout", WAIT_CAP)
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        case.query = {**query, "timeout": min(timeout, WAIT_CAP)}


def has_input(op: Any) -> bool:
    return bool(op.body) or any(True for _ in op.iter_parameters())


def test_every_operation_conforms(backend_url: str) -> None:
    secret = admin_token(backend_url)
    auth = {"Authorization": f"Bearer {secret}"}
    with api_server(backend_url) as base:
        with client(base, secret) as http:
            for n in range(5):  # jobs 1-5, for the generated ids to find
                body = {"name": "research", "queue": Q, "payload": {"n": n}}
                assert http.post("/v1/jobs", json=body).status_code == 201
        schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        # GET /v1/events is a Server-Sent Events stream: it answers 200 at once and ends
        # only when the client goes away, so a generated request never gets a whole
        # answer to check. tests/test_http_api.py and tests/test_http_node.py cover it.
        skipped = {"GET /v1/events"}
        assert skipped <= {op.label for op in operations}
        failures: list[str] = []
        for op in operations:
            if op.label in skipped:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=op.as_strategy(generation_mode=mode))
                def fuzz(case: Any) -> None:
                    cap_wait(case)
                    case.call_and_validate(headers=auth, excluded_checks=NOT_CHECKED, timeout=10)

                try:
                    fuzz()
                except Unsatisfiable:
                    # No parameter and no body: no request to this operation is invalid.
                    if mode is GenerationMode.POSITIVE or has_input(op):
                        raise
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{op.label} ({mode.value}): {exc}")

        assert not failures, "\n\n".join(failures)
