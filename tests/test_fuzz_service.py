"""The prediction service fuzzed from its own OpenAPI schema (schemathesis), plus the bad bodies a schema
fuzzer does not send (broken JSON, wrong content types, undecodable bytes).

The real service runs with uvicorn on 127.0.0.1 in a background process, serving a small model registered in
an MLflow SQLite store in tmp_path. Every answer must be below 500, and every 4xx must carry the service's
error body: a ``message`` that names each field at fault. Generation is derandomized and bounded (about three
hundred requests in all), so a failure replays identically.
"""

import json
from collections import Counter

import httpx
import pytest
import schemathesis
from conftest import module_lesson, small_champion
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from mlops_course import pipeline, serving

EXAMPLES_PER_MODE = 80  # per operation and generation mode: ~250 schema cases in all
FUZZ = settings(max_examples=EXAMPLES_PER_MODE, derandomize=True, database=None, deadline=None,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
SCHEMA_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = {"GET /health", "POST /predict", "POST /reload", "GET /metrics"}
ROW = dict(serving.EXAMPLE_ROW)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """bike-demand v1 (champion, with an ONNX copy) served by uvicorn on a free loopback port."""
    with module_lesson(tmp_path_factory, "96", "fuzz-tests") as lesson:
        small_champion()
        svc = serving.start_service(tracking_uri=lesson.tracking_uri, log_file=lesson.path("service.log"))
        try:
            yield svc
        finally:
            svc.stop()


@pytest.fixture(scope="module")
def schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json", timeout=30)


def error_body_problem(status: int, content: bytes) -> str | None:
    """None when a 4xx answer is in the service's error format, else what is wrong with it.

    The format: JSON ``{"message": str, "detail": [...] or str}``; each listed problem (the message shows the
    first five) appears in the message with its field and what is wrong.
    """
    try:
        body = json.loads(content)
    except ValueError:
        return f"{status} body is not JSON: {content[:120]!r}"
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or len(message.strip()) < 15:
        return f"{status} body has no readable message: {body!r:.200}"
    detail = body.get("detail")
    if isinstance(detail, list):
        if not detail:
            return f"{status} body lists no problem: {message!r}"
        for item in detail[:5]:
            if f"{item['field']}: {item['msg']}" not in message:
                return f"{status} message {message!r} does not name {item['field']!r} ({item['msg']!r})"
    elif detail != message:
        return f"{status} detail is neither a list of problems nor the message: {detail!r:.200}"
    return None


def fuzz_operation(operation, mode: GenerationMode, base_url: str) -> tuple[Counter, list[str]]:
    """Send up to EXAMPLES_PER_MODE generated requests; count status codes and collect every failed check."""
    statuses: Counter = Counter()
    failures: list[str] = []
    checks = SCHEMA_CHECKS + ([negative_data_rejection] if mode.is_negative else [])

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(base_url=base_url, timeout=30)
        statuses[response.status_code] += 1
        where = f"{operation.label} ({mode.value}) -> {response.status_code}"
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            failures.append(f"{where}: {group.exceptions[0].title}\n  {case.as_curl_command()}")
        if 400 <= response.status_code < 500:
            problem = error_body_problem(response.status_code, response.content)
            if problem:
                failures.append(f"{where}: {problem}\n  {case.as_curl_command()}")

    run()
    return statuses, failures


def has_inputs(operation) -> bool:
    return bool(len(operation.body) or len(operation.query) or len(operation.headers))


def test_schema_lists_every_route_with_its_error_answers(schema):
    operations = {op.ok().label: op.ok() for op in schema.get_all_operations()}
    assert set(operations) == OPERATIONS
    assert set(operations["POST /predict"].definition.raw["responses"]) == {"200", "400", "422"}
    assert set(operations["POST /reload"].definition.raw["responses"]) == {"200", "409", "422", "503"}


def test_fuzzing_from_the_schema_finds_no_5xx_and_every_4xx_names_the_problem(schema, service):
    seen: dict[tuple[str, str], Counter] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            if mode.is_negative and not has_inputs(operation):
                continue  # nothing to break in a request without parameters or body
            statuses, failed = fuzz_operation(operation, mode, service.url)
            seen[(operation.label, mode.value)] = statuses
            failures += failed
    total = sum(sum(c.values()) for c in seen.values())
    summary = {f"{label} {mode}": dict(c) for (label, mode), c in seen.items()}
    assert not failures, f"{len(failures)} failed case(s) of {total}:\n" + "\n".join(failures[:10])
    assert 150 <= total <= 400, summary
    assert all(code < 500 for c in seen.values() for code in c), summary
    # The fuzzer reached both sides of validation: valid rows predicted, broken ones refused.
    assert seen[("POST /predict", "positive")][200] >= EXAMPLES_PER_MODE // 2, summary
    negative = seen[("POST /predict", "negative")]
    assert set(negative) <= {400, 422} and negative[422] >= EXAMPLES_PER_MODE // 2, summary
    assert service.running and httpx.get(f"{service.url}/health", timeout=30).json()["model_version"] == "1"


# ---------------------------------------------------------------- what a schema fuzzer does not send
JSON_ROWS = json.dumps({"rows": [ROW]}).encode()
RAW_BODIES = {
    # name: (body, content-type or None, expected status, words the message must contain)
    "cut-off JSON": (JSON_ROWS[:-5], "application/json", 400, ["body", "JSON decode error"]),
    "JSON with a trailing comma": (b'{"rows": [' + json.dumps(ROW).encode() + b",]}", "application/json", 400,
                                   ["body", "JSON decode error"]),
    "invalid UTF-8": (b'{"rows": [\xff\xfe]}', "application/json", 400, ["body", "UnicodeDecodeError"]),
    "nested 100,000 deep": (b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400,
                            ["body", "RecursionError"]),
    "5,000-digit number": (b'{"rows": [{"hr": ' + b"9" * 5000 + b"}]}", "application/json", 400,
                           ["body", "digits"]),
    "NaN literal": (b'{"rows": [' + json.dumps({**ROW, "hr": float("nan")}).encode() + b"]}", "application/json",
                    422, ["rows[0].hr", "finite"]),
    "1e400 (infinite)": (JSON_ROWS.replace(b'"temp": 0.3', b'"temp": 1e400'), "application/json", 422,
                         ["rows[0].temp", "finite"]),
    "JSON but text/plain": (JSON_ROWS, "text/plain", 422, ["body", "content-type: application/json"]),
    "JSON but application/xml": (JSON_ROWS, "application/xml", 422, ["body", "content-type: application/json"]),
    "JSON without content-type": (JSON_ROWS, None, 422, ["body", "content-type: application/json"]),
    "form fields": (b"hr=8&temp=0.3", "application/x-www-form-urlencoded", 422,
                    ["body", "content-type: application/json"]),
    "multipart": (b"--x\r\nContent-Disposition: form-data; name=\"rows\"\r\n\r\n1\r\n--x--\r\n",
                  "multipart/form-data; boundary=x", 422, ["body", "content-type: application/json"]),
    "JSON string": (b'"rows"', "application/json", 422, ["body", "valid dictionary"]),
    "JSON null": (b"null", "application/json", 422, ["body", "Field required"]),
    "empty body": (b"", "application/json", 422, ["body", "Field required"]),
}


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_bodies_a_schema_fuzzer_does_not_send_get_a_named_4xx(service, case):
    content, content_type, status, words = RAW_BODIES[case]
    headers = {"content-type": content_type} if content_type else {}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        request = client.build_request("POST", "/predict", content=content, headers=headers)
        if content_type is None:
            request.headers.pop("content-type", None)
        response = client.send(request)
    assert response.status_code == status, response.text[:300]
    assert error_body_problem(response.status_code, response.content) is None, response.text[:300]
    message = response.json()["message"]
    assert all(word in message for word in words), message


@pytest.mark.parametrize(("method", "path", "status", "words"), [
    ("GET", "/predict", 405, ["GET", "/predict", "POST"]),
    ("DELETE", "/health", 405, ["DELETE", "/health", "GET"]),
    ("GET", "/no-such-route", 404, ["/no-such-route", "POST /predict"]),
])
def test_unknown_route_and_wrong_method_answer_in_the_error_format(service, method, path, status, words):
    response = httpx.request(method, f"{service.url}{path}", timeout=30)
    assert response.status_code == status
    assert error_body_problem(status, response.content) is None, response.text
    assert all(word in response.json()["message"] for word in words), response.text


def test_random_bytes_as_json_never_crash_the_service(service):
    statuses: Counter = Counter()
    problems: list[str] = []
    with httpx.Client(base_url=service.url, timeout=30, headers={"content-type": "application/json"}) as client:

        @settings(max_examples=60, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(body=st.one_of(st.binary(max_size=200),
                              st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                                           lambda inner: st.lists(inner, max_size=3)
                                           | st.dictionaries(st.sampled_from(["rows", *pipeline.FEATURES]), inner,
                                                             max_size=4),
                                           max_leaves=12).map(lambda v: json.dumps(v).encode())))
        def send(body):
            response = client.post("/predict", content=body)
            statuses[response.status_code] += 1
            problem = (f"{response.status_code} is not a refusal" if not 400 <= response.status_code < 500
                       else error_body_problem(response.status_code, response.content))
            if problem:
                problems.append(f"{body[:80]!r}: {problem}")

        send()
    assert not problems, "\n".join(problems[:10])
    assert sum(statuses.values()) >= 30 and {400, 422} <= set(statuses), statuses


def test_the_service_logged_no_internal_error(service):
    # Runs last in this module: whatever the fuzzing sent, uvicorn never had to report an exception.
    log = service.log_file.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-2000:]
