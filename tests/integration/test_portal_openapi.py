"""docs/portal-api.yaml checked by tools nobody here wrote: openapi-spec-validator finds it valid
OpenAPI 3.1, and schemathesis (its command, as docs/portal-api.md runs it) sends generated
requests to a reference portal on 127.0.0.1 and checks every answer against the document."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_spec_validator import validate

from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.refportal.wire import Reply, Request
from tests.e2e import running_portal, set_faults
from tests.tiers import first_fast

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "portal-api.yaml"
CONFIG = ROOT / "tests" / "portal-api.schemathesis.toml"
BIN = Path(sys.executable).parent
EXAMPLES = first_fast([10, 100], 1)
"""Cases per operation and phase: 10 in the fast tier, 100 in the long one (docs/portal-api.md
gives the times)."""


@dataclass(frozen=True)
class Pass:
    """One schemathesis run on a portal of its own, with ``faults`` set first: which operations
    (and checks left out), how many it must test, how many cases it must send at least (10 per
    operation and phase send about 460, 97 and 164), and answers the portal must have given
    (first path segment, status), so that a run whose requests all bounced (no token, say)
    cannot pass."""

    name: str
    filters: tuple[str, ...]
    operations: int
    cases: int
    answers: tuple[tuple[str, int], ...]
    faults: dict[str, Any] | None = None


PASSES = [
    # Every operation but setting faults: faults set at random would make the /api operations
    # answer 5xx or stall, as designed.
    Pass(
        "api",
        ("--exclude-name", "POST /_portal/faults"),
        12,
        300,
        (("oauth", 200), ("api", 200), ("api", 201), ("api", 204)),
    ),
    # Setting faults and reading them back, on their own (faults touch /api only).
    Pass(
        "faults", ("--include-path", "/_portal/faults"), 2, 60, (("_portal", 200), ("_portal", 400))
    ),
    # The /api operations under injected faults: each fault's answer (429 with Retry-After, the
    # 5xx envelopes, the HTML 502, tokenExpired) as the document gives it. 5xx are expected
    # here, and a fault answers before the method is looked at, so those checks are left out.
    Pass(
        "injected",
        (
            "--include-path-regex",
            "^/api/",
            "--exclude-checks",
            "not_a_server_error,unsupported_method,allow_header_conformance",
        ),
        5,
        100,
        (("api", 429), ("api", 500), ("api", 502), ("api", 503), ("api", 401), ("api", 200)),
        {
            "rates": dict.fromkeys(
                ("429", "429-date", "500", "502", "503", "html", "token-expired"), 0.1
            ),
            "retry_after": 0,
        },
    ),
]


def spied(portal: ReferencePortal) -> Counter[tuple[str, int]]:
    """Count the portal's answers by first path segment and status, from now on."""
    seen: Counter[tuple[str, int]] = Counter()
    handle = portal.service.handle

    def counting(request: Request) -> Reply:
        reply = handle(request)
        seen[(request.path.split("/")[1], reply.status)] += 1
        return reply

    portal.service.handle = counting  # type: ignore[method-assign]
    return seen


def schemathesis(url: str, checks: Pass, examples: int, folder: Path) -> dict[str, Any]:
    """Run the schemathesis command on the document against ``url``; its JSON report."""
    report = folder / "schemathesis.json"
    command = [
        str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run", str(SPEC), "--url", url,
        "--max-examples", str(examples), "--workers", "1", "--request-timeout", "10",
        "--no-color", "--report", "json", "--report-json-path", str(report), *checks.filters,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )
    assert report.exists(), f"schemathesis wrote no report:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    result["output"] = done.stdout[-6000:] + done.stderr[-2000:]
    return result


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    """A reference portal with the demo client, on a free port of 127.0.0.1."""
    yield from running_portal(tmp_path)


def test_the_document_is_valid_openapi() -> None:
    """openapi-spec-validator accepts docs/portal-api.yaml, as a library and as its command."""
    validate(yaml.safe_load(SPEC.read_text(encoding="utf-8")))
    done = subprocess.run(
        [str(BIN / "openapi-spec-validator"), str(SPEC)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")


@pytest.mark.parametrize("checks", PASSES, ids=[p.name for p in PASSES])
@pytest.mark.parametrize("examples", EXAMPLES)
def test_the_reference_portal_answers_as_the_document_says(
    portal: ReferencePortal, tmp_path: Path, checks: Pass, examples: int
) -> None:
    """Derandomized schemathesis cases against the portal find no 5xx (but the injected ones),
    no status, content type, header or body the document does not give, and no wrong Allow;
    it tested every operation of its pass with enough cases, and the portal really answered."""
    if checks.faults is not None:
        set_faults(portal.url, checks.faults)
    seen = spied(portal)
    report = schemathesis(portal.url, checks, examples, tmp_path)
    assert (report["failures"], report["errors"]) == ([], []), report["output"]
    assert report["exit_code"] == 0, report["output"]
    assert report["operations"]["tested"] == checks.operations, report["operations"]
    assert report["test_cases"]["generated"] >= checks.cases, report["test_cases"]
    assert report["warnings"]["missing_auth"] == [], report["output"]
    missing = [answer for answer in checks.answers if seen[answer] == 0]
    assert missing == [], f"the portal never answered {missing}; it answered {dict(seen)}"


def body_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation of the document that takes a request body."""
    paths = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["paths"]
    return [
        (method.upper(), path)
        for path, item in paths.items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    ]


@pytest.mark.parametrize(("method", "path"), body_operations())
def test_a_chunked_body_is_the_411_the_document_lists(
    portal: ReferencePortal, method: str, path: str
) -> None:
    """A body sent chunked (no Content-Length) is 411 lengthRequired, and every operation that
    takes a body lists 411 (schemathesis met it on /oauth/token, undocumented)."""
    operation = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["paths"][path][method.lower()]
    assert "411" in operation["responses"]
    concrete = path.format(school="demo", entity="mark", sourcedId="1")
    answer = requests.request(
        method,
        portal.url + concrete,
        data=iter([b"grant_type=", b"client_credentials"]),
        timeout=10,
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert (answer.status_code, answer.json()["type"]) == (411, "lengthRequired")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/oauth/token", "POST"),
        ("OPTIONS", "/_portal/faults", "GET, POST"),
        ("QUERY", "/_portal/stats", "GET"),
        ("OPTIONS", "/api/v1/schools/demo/mark/1", "GET, PUT, DELETE"),
        ("TRACE", "/api/v1/schools/demo/batch", "POST"),
    ],
)
def test_a_method_a_path_does_not_take_is_405_with_its_allow(
    portal: ReferencePortal, method: str, path: str, allow: str
) -> None:
    """OPTIONS, TRACE and QUERY are 405 methodNotAllowed with Allow naming exactly the methods
    the path takes (they were 501, a server error; /_portal/faults named GET only)."""
    token = requests.post(
        f"{portal.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=DEMO_CLIENT,
        timeout=10,
    ).json()["access_token"]
    answer = requests.request(
        method, portal.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert (answer.status_code, answer.json()["type"]) == (405, "methodNotAllowed")
    assert answer.headers["Allow"] == allow
