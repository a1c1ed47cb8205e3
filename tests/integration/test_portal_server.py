"""The reference portal over real HTTP on 127.0.0.1: tokens, resources, batches, every
validation rule, persistence across a restart, every injected fault as a client sees it, and
the inspection endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.refportal.server import DEMO_CLIENT, ReferencePortal

SECOND_SCHOOL = ("other-bridge", "other-secret")
CLIENTS = {"demo": DEMO_CLIENT, "s2": SECOND_SCHOOL}


class Clock:
    """A settable clock (epoch seconds) for token expiry."""

    def __init__(self) -> None:
        self.now = 1_760_000_000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


class Api:
    """A minimal client for one school: a session with a bearer token."""

    def __init__(
        self, url: str, client: tuple[str, str] = DEMO_CLIENT, school: str = "demo"
    ) -> None:
        self.url, self.school = url, school
        self.session = requests.Session()
        self.token = self.fetch_token(*client).json()["access_token"]

    def fetch_token(self, client_id: str, secret: str) -> requests.Response:
        """POST /oauth/token with client credentials in the form."""
        return self.session.post(
            f"{self.url}/oauth/token",
            timeout=10,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )

    def call(
        self, method: str, path: str, token: str | None = None, **options: Any
    ) -> requests.Response:
        """One /api request under the school, with the bearer token (or another one)."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        options.setdefault("timeout", 10)
        return self.session.request(
            method, f"{self.url}/api/v1/schools/{self.school}/{path}", headers=headers, **options
        )

    def put(
        self, entity: str, key: str, data: dict[str, Any], fingerprint: str = "f1"
    ) -> requests.Response:
        """PUT one record."""
        return self.call("PUT", f"{entity}/{key}", json={"fingerprint": fingerprint, "data": data})

    def batch(self, *operations: dict[str, Any]) -> requests.Response:
        """POST a batch."""
        return self.call("POST", "batch", json={"operations": list(operations)})

    def inspect(self, name: str, **params: str) -> Any:
        """GET /_portal/{name} and its JSON."""
        answer = self.session.get(f"{self.url}/_portal/{name}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def set_faults(self, faults: dict[str, Any]) -> requests.Response:
        """POST /_portal/faults."""
        return self.session.post(f"{self.url}/_portal/faults", json=faults, timeout=10)


def put_op(op_id: str, entity: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """A PUT operation of a batch."""
    return {
        "id": op_id,
        "method": "PUT",
        "entity": entity,
        "sourcedId": key,
        "fingerprint": f"fp-{key}",
        "data": data,
    }


def delete_op(op_id: str, entity: str, key: str) -> dict[str, Any]:
    """A DELETE operation of a batch."""
    return {"id": op_id, "method": "DELETE", "entity": entity, "sourcedId": key}


SCHOOL_OPS = [
    put_op("1", "teacher", "t1", {"last_name": "Ivanova", "first_name": "Anna"}),
    put_op("2", "subject", "s1", {"name": "Mathematics"}),
    put_op(
        "3",
        "period",
        "q1",
        {"kind": "quarter", "name": "Q1", "date_from": "2025-09-01", "date_to": "2025-10-31"},
    ),
    put_op("4", "class", "c5", {"grade": 5, "letter": "A"}),
    put_op("5", "class", "c1", {"grade": 1, "letter": "B"}),
    put_op("6", "pupil", "p1", {"last_name": "Petrov", "first_name": "Pyotr", "active": True}),
    put_op("7", "pupil", "p2", {"last_name": "Sidorova", "first_name": "Olga", "active": True}),
    put_op("8", "pupil", "p3", {"last_name": "Orlov", "first_name": "Ilya", "active": False}),
    put_op("9", "enrollment", "e1", {"pupil": "p1", "class": "c5", "date_from": "2025-09-01"}),
    put_op("10", "enrollment", "e2", {"pupil": "p2", "class": "c1", "date_from": "2025-09-01"}),
    put_op(
        "11",
        "enrollment",
        "e3",
        {"pupil": "p3", "class": "c5", "date_from": "2025-09-01", "date_to": "2025-10-15"},
    ),
    put_op(
        "12",
        "lesson",
        "l5",
        {"class": "c5", "subject": "s1", "teacher": "t1", "date": "2025-10-20", "number": 1},
    ),
    put_op(
        "13",
        "lesson",
        "l1",
        {"class": "c1", "subject": "s1", "teacher": "t1", "date": "2025-10-01", "number": 1},
    ),
    put_op("14", "work", "w5", {"lesson": "l5", "kind": "test", "weight": 1}),
    put_op("15", "work", "w1", {"lesson": "l1", "kind": "oral", "weight": 1}),
]


@pytest.fixture
def clock() -> Clock:
    """The portal's clock."""
    return Clock()


@pytest.fixture
def portal(tmp_path: Path, clock: Clock) -> Iterator[ReferencePortal]:
    """A portal on a free port with its records in a file, stopped afterwards."""
    running = ReferencePortal(
        "127.0.0.1",
        0,
        tmp_path / "portal.sqlite",
        clients=CLIENTS,
        token_ttl=600,
        seed=5,
        clock=clock,
    ).start()
    yield running
    running.stop()


@pytest.fixture
def api(portal: ReferencePortal) -> Iterator[Api]:
    """A client of school demo with a token, its session closed afterwards."""
    client = Api(portal.url)
    yield client
    client.session.close()


@pytest.fixture
def school(api: Api) -> Api:
    """The client, after the small school was written."""
    answer = api.batch(*SCHOOL_OPS)
    assert [r["status"] for r in answer.json()["results"]] == [201] * len(SCHOOL_OPS)
    return api


# --- tokens ----------------------------------------------------------------------------------


def test_a_token_is_issued_for_the_right_credentials_only(api: Api) -> None:
    """Good credentials get a bearer token with the configured lifetime; a wrong secret or
    an unknown client gets 401 authorizationFailed; another grant type gets 400."""
    good = api.fetch_token(*DEMO_CLIENT)
    assert good.status_code == 200
    assert good.json()["token_type"] == "Bearer"
    assert good.json()["expires_in"] == 600
    for client_id, secret in [(DEMO_CLIENT[0], "wrong"), ("nobody", DEMO_CLIENT[1])]:
        refused = api.fetch_token(client_id, secret)
        assert refused.status_code == 401
        assert refused.json()["type"] == "authorizationFailed"
    grant = api.session.post(f"{api.url}/oauth/token", data={"grant_type": "password"}, timeout=10)
    assert (grant.status_code, grant.json()["type"]) == (400, "badRequest")


def test_client_credentials_may_come_as_http_basic_auth(api: Api) -> None:
    """RFC 6749 lets the client authenticate with HTTP Basic instead of form fields."""
    answer = api.session.post(
        f"{api.url}/oauth/token",
        auth=DEMO_CLIENT,
        timeout=10,
        data={"grant_type": "client_credentials"},
    )
    assert answer.status_code == 200


def test_api_calls_need_a_known_unexpired_token(api: Api, clock: Clock) -> None:
    """No token or an unknown one is 401 authorizationFailed (with a Bearer challenge); an
    expired one is 401 tokenExpired; a fresh one works again."""
    bare = api.session.get(f"{api.url}/api/v1/schools/demo/mark", timeout=10)
    assert (bare.status_code, bare.json()["type"]) == (401, "authorizationFailed")
    assert bare.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = api.call("GET", "mark", token="forged")
    assert (unknown.status_code, unknown.json()["type"]) == (401, "authorizationFailed")
    assert api.call("GET", "mark").status_code == 200
    clock.now += 600
    expired = api.call("GET", "mark")
    assert (expired.status_code, expired.json()["type"]) == (401, "tokenExpired")
    fresh = api.fetch_token(*DEMO_CLIENT).json()["access_token"]
    assert api.call("GET", "mark", token=fresh).status_code == 200


def test_a_client_may_write_its_own_schools_only(portal: ReferencePortal, api: Api) -> None:
    """A token of school demo's client gets 403 forbidden on school s2."""
    other = Api(portal.url, SECOND_SCHOOL, "s2")
    try:
        assert other.call("GET", "pupil").status_code == 200
        assert other.call("GET", "pupil", token=api.token).status_code == 403
        assert other.call("GET", "pupil", token=api.token).json()["type"] == "forbidden"
    finally:
        other.session.close()


# --- resources -------------------------------------------------------------------------------


def test_put_is_idempotent_and_get_shows_the_record(api: Api) -> None:
    """PUT creates (201), replaces (200), the same again is 200; GET shows the last one."""
    data = {"last_name": "Ivanova", "first_name": "Anna"}
    assert api.put("teacher", "t1", data).status_code == 201
    assert api.put("teacher", "t1", data).status_code == 200
    changed = api.put("teacher", "t1", {**data, "middle_name": "P"}, fingerprint="f2")
    assert changed.status_code == 200
    assert changed.json()["fingerprint"] == "f2"
    shown = api.call("GET", "teacher/t1").json()
    assert shown == {
        "sourcedId": "t1",
        "fingerprint": "f2",
        "status": "active",
        "data": {**data, "middle_name": "P"},
    }


def test_delete_is_idempotent_and_leaves_a_tombstone(api: Api) -> None:
    """DELETE answers 204 every time, even for a record that never existed; GET then answers
    410 with key and deletion time only, the list leaves it out, and GET of an unknown key is
    404."""
    api.put("subject", "s1", {"name": "Mathematics"})
    for _ in range(2):
        answer = api.call("DELETE", "subject/s1")
        assert (answer.status_code, answer.content) == (204, b"")
    assert api.call("DELETE", "subject/never").status_code == 204
    gone = api.call("GET", "subject/s1")
    assert gone.status_code == 410
    assert {k: v for k, v in gone.json().items() if k not in ("type", "description")} == {
        "sourcedId": "s1",
        "status": "tobedeleted",
        "deletedAt": gone.json()["deletedAt"],
    }
    assert gone.json()["type"] == "deleted"
    assert "Mathematics" not in gone.text
    assert api.call("GET", "subject").json() == {"records": []}
    assert api.call("GET", "subject/never").status_code == 404


def test_the_list_gives_live_keys_and_fingerprints(school: Api) -> None:
    """GET of an entity lists live records with their fingerprints (reconciliation)."""
    school.call("DELETE", "pupil/p3")  # refused: p3 has a live enrolment
    listed = school.call("GET", "pupil").json()["records"]
    assert sorted((r["sourcedId"], r["fingerprint"]) for r in listed) == [
        ("p1", "fp-p1"),
        ("p2", "fp-p2"),
        ("p3", "fp-p3"),
    ]


def test_keys_are_percent_decoded(api: Api) -> None:
    """A sourcedId with reserved characters travels percent-encoded in the path."""
    assert api.put("subject", "12%2F3%20x", {"name": "Art"}).status_code == 201
    assert api.call("GET", "subject").json()["records"][0]["sourcedId"] == "12/3 x"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("PUT", "teacher/t1", b"{not json", (400, "badRequest")),
        ("PUT", "teacher/t1", b'{"fingerprint": "f"}', (400, "badRequest")),
        ("PUT", "teacher/t1", b'{"data": {}}', (400, "badRequest")),
        ("PUT", "homework/h1", b'{"fingerprint": "f", "data": {}}', (404, "unknownResource")),
        ("GET", "homework", b"", (404, "unknownResource")),
        ("POST", "batch", b'{"ops": []}', (400, "badRequest")),
        ("POST", "batch", b'{"operations": [{"method": "PUT"}]}', (400, "badRequest")),
        ("POST", "teacher", b"", (405, "methodNotAllowed")),
        ("PATCH", "teacher/t1", b"", (405, "methodNotAllowed")),
    ],
)
def test_bad_requests_get_json_errors(
    api: Api, method: str, path: str, body: bytes, expected: tuple[int, str]
) -> None:
    """Malformed bodies, unknown entities and wrong methods are answered with a JSON error."""
    status, kind = expected
    answer = api.call(method, path, data=body)
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["type"] == kind
    assert isinstance(answer.json()["description"], str)


def test_an_unknown_path_is_a_json_404(api: Api) -> None:
    """Paths outside the API are answered 404 unknownResource in JSON."""
    answer = api.session.get(f"{api.url}/index.html", timeout=10)
    assert (answer.status_code, answer.json()["type"]) == (404, "unknownResource")


# --- batches ---------------------------------------------------------------------------------


def test_a_batch_answers_per_operation_in_order(school: Api) -> None:
    """Each operation gets its own result, in order; a refused one does not stop the next,
    and a later one sees the effect of an earlier one."""
    answer = school.batch(
        put_op("a", "mark", "m1", {"work": "w5", "pupil": "p1", "value": "7"}),
        put_op("b", "pupil", "p9", {"last_name": "New", "first_name": "One"}),
        put_op("c", "enrollment", "e9", {"pupil": "p9", "class": "c5", "date_from": "2025-09-01"}),
        put_op("d", "mark", "m9", {"work": "w5", "pupil": "p9", "value": "5-"}),
        put_op("e", "mark", "m9", {"work": "w5", "pupil": "p9", "value": "5-"}),
        delete_op("f", "pupil", "p9"),
        {"id": "g", "method": "MERGE", "entity": "mark", "sourcedId": "m9"},
        put_op("h", "homework", "h1", {}),
    )
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [(r["id"], r["status"], r["type"]) for r in results] == [
        ("a", 422, "valueInvalid"),
        ("b", 201, None),
        ("c", 201, None),
        ("d", 201, None),
        ("e", 200, None),
        ("f", 409, "hasDependents"),
        ("g", 400, "badRequest"),
        ("h", 404, "unknownResource"),
    ]
    assert results[1]["description"] is None


def test_a_batch_of_more_than_1000_operations_is_refused_whole(api: Api) -> None:
    """Over 1000 operations is 413, and nothing of the batch is applied."""
    ops = [put_op(str(i), "subject", str(i), {"name": "S"}) for i in range(1001)]
    answer = api.batch(*ops)
    assert (answer.status_code, answer.json()["type"]) == (413, "batchTooLarge")
    assert api.call("GET", "subject").json() == {"records": []}
    assert api.batch(*ops[:1000]).status_code == 200


REJECTIONS: dict[str, tuple[dict[str, Any], str, int]] = {
    "mark value": (
        put_op("x", "mark", "m1", {"work": "w5", "pupil": "p1", "value": "6"}),
        "valueInvalid",
        422,
    ),
    "period mark value": (
        put_op(
            "x",
            "period_mark",
            "pm1",
            {"pupil": "p1", "subject": "s1", "period": "q1", "value": "4+"},
        ),
        "valueInvalid",
        422,
    ),
    "absence code": (
        put_op("x", "absence", "a1", {"lesson": "l5", "pupil": "p1", "code": "н"}),
        "valueInvalid",
        422,
    ),
    "missing reference": (
        put_op("x", "mark", "m1", {"work": "w404", "pupil": "p1", "value": "5"}),
        "referenceMissing",
        422,
    ),
    "missing optional reference": (
        put_op(
            "x",
            "lesson",
            "l9",
            {
                "class": "c5",
                "group": "g404",
                "subject": "s1",
                "teacher": "t1",
                "date": "2025-10-02",
            },
        ),
        "referenceMissing",
        422,
    ),
    "grade-1 mark": (
        put_op("x", "mark", "m1", {"work": "w1", "pupil": "p2", "value": "5"}),
        "grade1Mark",
        422,
    ),
    "grade-1 period mark": (
        put_op(
            "x",
            "period_mark",
            "pm1",
            {"pupil": "p2", "subject": "s1", "period": "q1", "value": "pass"},
        ),
        "grade1Mark",
        422,
    ),
    "mark after leaving": (
        put_op("x", "mark", "m1", {"work": "w5", "pupil": "p3", "value": "5"}),
        "membershipClosed",
        422,
    ),
    "absence after leaving": (
        put_op("x", "absence", "a1", {"lesson": "l5", "pupil": "p3", "code": "ill"}),
        "membershipClosed",
        422,
    ),
    "long topic": (
        put_op(
            "x",
            "lesson",
            "l9",
            {
                "class": "c5",
                "subject": "s1",
                "teacher": "t1",
                "date": "2025-10-02",
                "topic": "t" * 501,
            },
        ),
        "textTooLong",
        422,
    ),
    "long homework": (
        put_op(
            "x",
            "lesson",
            "l9",
            {
                "class": "c5",
                "subject": "s1",
                "teacher": "t1",
                "date": "2025-10-02",
                "homework": "h" * 2001,
            },
        ),
        "textTooLong",
        422,
    ),
    "long name": (
        put_op("x", "guardian", "g1", {"last_name": "N" * 61, "first_name": "A"}),
        "textTooLong",
        422,
    ),
    "wrong shape": (
        put_op("x", "mark", "m1", {"work": 5, "pupil": "p1", "value": "5"}),
        "validationFailed",
        422,
    ),
    "delete with dependents": (delete_op("x", "lesson", "l5"), "hasDependents", 409),
}


@pytest.mark.parametrize("rule", list(REJECTIONS))
def test_each_validation_rule_is_enforced_in_batches_and_single_writes(
    school: Api, rule: str
) -> None:
    """The rule refuses the operation in a batch (per-operation status) and as a single
    PUT or DELETE (HTTP status), with the same type, and nothing is written."""
    op, kind, status = REJECTIONS[rule]
    before = school.inspect("counts")
    result = school.batch(op).json()["results"][0]
    assert (result["status"], result["type"]) == (status, kind)
    path = f"{op['entity']}/{op['sourcedId']}"
    single = (
        school.call("DELETE", path)
        if op["method"] == "DELETE"
        else school.put(op["entity"], op["sourcedId"], op["data"])
    )
    assert (single.status_code, single.json()["type"]) == (status, kind)
    assert single.json()["description"] == result["description"]
    assert school.inspect("counts") == before


def test_children_first_deletes_go_through(school: Api) -> None:
    """Deleting marks, works, then the lesson, in one batch, is accepted in that order."""
    school.batch(put_op("m", "mark", "m1", {"work": "w5", "pupil": "p1", "value": "5"}))
    results = school.batch(
        delete_op("1", "mark", "m1"), delete_op("2", "work", "w5"), delete_op("3", "lesson", "l5")
    ).json()["results"]
    assert [r["status"] for r in results] == [204, 204, 204]


# --- persistence -----------------------------------------------------------------------------


def test_a_restarted_portal_has_the_same_records_tombstones_rules_and_tokens(
    tmp_path: Path, clock: Clock
) -> None:
    """Stop and start on the same file: records, tombstones, the dependents rule and the
    issued token are all still there."""
    path = tmp_path / "portal.sqlite"
    first = ReferencePortal(data_path=path, clock=clock).start()
    api = Api(first.url)
    api.batch(*SCHOOL_OPS)
    api.batch(
        delete_op("d", "work", "w1"),
        put_op("m", "mark", "m1", {"work": "w5", "pupil": "p1", "value": "3"}),
    )
    counts = api.inspect("counts")
    api.session.close()
    first.stop()
    second = ReferencePortal(data_path=path, clock=clock).start()
    again = Api(second.url)
    again.token = api.token
    try:
        assert again.inspect("counts") == counts
        assert again.call("GET", "work/w1").json()["status"] == "tobedeleted"
        assert "data" not in again.call("GET", "work/w1").json()
        assert again.call("GET", "mark/m1").json()["data"]["value"] == "3"
        assert again.call("DELETE", "work/w5").status_code == 409
    finally:
        again.session.close()
        second.stop()


# --- faults ----------------------------------------------------------------------------------


def script(api: Api, *kinds: str, **options: Any) -> None:
    """Script the next /api requests' faults."""
    assert api.set_faults({"script": list(kinds), **options}).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [("500", 500, "internalError"), ("502", 502, "badGateway"), ("503", 503, "serviceUnavailable")],
)
def test_server_errors_are_json_and_apply_nothing(
    school: Api, kind: str, status: int, error_type: str
) -> None:
    """A 5xx fault answers with its JSON error before processing: nothing is written."""
    script(school, kind)
    answer = school.put("subject", "s9", {"name": "Art"})
    assert (answer.status_code, answer.json()["type"]) == (status, error_type)
    assert school.call("GET", "subject/s9").status_code == 404


def test_429_carries_retry_after_in_seconds(school: Api) -> None:
    """A 429 fault says how many whole seconds to wait."""
    script(school, "429", retry_after=2.5)
    answer = school.call("GET", "pupil")
    assert (answer.status_code, answer.json()["type"]) == (429, "rateLimited")
    assert answer.headers["Retry-After"] == "3"


def test_429_date_carries_retry_after_as_an_http_date(school: Api, clock: Clock) -> None:
    """A 429-date fault gives Retry-After as an HTTP date at least retry_after from now."""
    script(school, "429-date", retry_after=30)
    answer = school.call("GET", "pupil")
    assert answer.status_code == 429
    when = parsedate_to_datetime(answer.headers["Retry-After"]).timestamp()
    assert clock.now + 30 <= when <= clock.now + 31


def test_html_fault_is_a_502_page(school: Api) -> None:
    """The html fault answers like a proxy would: a 502 with an HTML page."""
    script(school, "html")
    answer = school.call("GET", "pupil")
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.text.startswith("<html>")


def test_slow_fault_answers_late_but_processes_normally(school: Api) -> None:
    """A slow answer arrives after slow_seconds; a client that gave up earlier still finds
    the write done."""
    script(school, "slow", "slow", slow_seconds=0.4)
    started = time.monotonic()
    assert school.put("subject", "s8", {"name": "Art"}).status_code == 201
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.ReadTimeout):
        school.call(
            "PUT", "subject/s9", json={"fingerprint": "f", "data": {"name": "Music"}}, timeout=0.1
        )
    assert wait_for(lambda: school.call("GET", "subject/s9").status_code == 200)


def wait_for(condition: Any, seconds: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_reset_fault_drops_the_connection_before_processing(school: Api) -> None:
    """After a reset the client has no answer and the write did not happen."""
    script(school, "reset")
    with pytest.raises(requests.ConnectionError):
        school.put("subject", "s9", {"name": "Art"})
    assert school.call("GET", "subject/s9").status_code == 404


def test_lost_fault_commits_then_drops_the_answer(school: Api) -> None:
    """After a lost answer the client has no answer, yet the batch was applied."""
    script(school, "lost")
    with pytest.raises(requests.ConnectionError):
        school.batch(put_op("1", "subject", "s9", {"name": "Art"}))
    assert school.call("GET", "subject/s9").json()["status"] == "active"


def test_token_expired_fault_expires_a_valid_token(school: Api) -> None:
    """tokenExpired comes for a valid token, which then stays expired; a new one works."""
    script(school, "token-expired")
    first = school.call("GET", "pupil")
    assert (first.status_code, first.json()["type"]) == (401, "tokenExpired")
    assert school.call("GET", "pupil").json()["type"] == "tokenExpired"
    school.token = school.fetch_token(*DEMO_CLIENT).json()["access_token"]
    assert school.call("GET", "pupil").status_code == 200


def test_faults_touch_api_requests_only(school: Api) -> None:
    """A scripted fault waits for the next /api request: the token endpoint and /_portal
    pass untouched."""
    script(school, "500")
    assert school.fetch_token(*DEMO_CLIENT).status_code == 200
    assert school.inspect("stats")["faults"] == {}
    assert school.call("GET", "pupil").status_code == 500
    assert school.call("GET", "pupil").status_code == 200
    assert school.inspect("stats")["faults"] == {"500": 1}


def test_rates_with_one_seed_replay_the_same_faults(tmp_path: Path) -> None:
    """Two portals started with the same seed and rates answer the same statuses in order."""
    faults = {"rates": {"429": 0.3, "503": 0.3}, "retry_after": 0}
    runs = []
    for name in ("a", "b"):
        portal = ReferencePortal(
            data_path=tmp_path / f"{name}.sqlite", faults=faults, seed=11
        ).start()
        api = Api(portal.url)
        runs.append([api.call("GET", "pupil").status_code for _ in range(40)])
        api.session.close()
        portal.stop()
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429, 503}


def test_invalid_fault_settings_are_refused_with_every_problem(api: Api) -> None:
    """POST /_portal/faults with bad settings is 400 naming each problem; faults unchanged."""
    answer = api.set_faults({"rates": {"teapot": 0.1}, "script": ["boom"]})
    assert answer.status_code == 400
    assert "rates.teapot" in answer.json()["description"]
    assert "script[0]" in answer.json()["description"]
    assert api.inspect("faults")["rates"] == {}


# --- inspection ------------------------------------------------------------------------------


def test_inspection_shows_counts_records_and_stats(school: Api) -> None:
    """counts are live records per school and entity; records include tombstones, with key
    and deletion time only; stats count requests, batches and operations."""
    school.batch(delete_op("1", "work", "w1"))
    counts = school.inspect("counts")
    assert counts["demo"]["pupil"] == 3
    assert counts["demo"]["work"] == 1
    assert counts["s2"]["pupil"] == 0
    records = school.inspect("records", school="demo", entity="work")["records"]
    assert sorted((r["sourcedId"], r["status"]) for r in records) == [
        ("w1", "tobedeleted"),
        ("w5", "active"),
    ]
    shown = {r["sourcedId"]: r for r in records}
    assert shown["w5"]["data"]["lesson"] == "l5"
    assert set(shown["w1"]) == {"sourcedId", "status", "deletedAt"}
    stats = school.inspect("stats")
    assert (stats["batches"], stats["operations"], stats["rejected"]) == (2, 16, 0)
    assert stats["requests"] >= 4


def test_duplicates_are_reported(school: Api) -> None:
    """Two live marks of one pupil on one work, under different keys, are a duplicate."""
    school.batch(
        put_op("1", "mark", "m1", {"work": "w5", "pupil": "p1", "value": "5"}),
        put_op("2", "mark", "m2", {"work": "w5", "pupil": "p1", "value": "4"}),
    )
    assert school.inspect("duplicates") == {
        "duplicates": [
            {
                "school": "demo",
                "entity": "mark",
                "identity": {"work": "w5", "pupil": "p1"},
                "sourcedIds": ["m1", "m2"],
            }
        ]
    }


def test_reset_clears_every_record(school: Api) -> None:
    """POST /_portal/reset empties the portal; tokens keep working."""
    answer = school.session.post(f"{school.url}/_portal/reset", timeout=10)
    assert answer.status_code == 204
    assert sum(school.inspect("counts")["demo"].values()) == 0
    assert school.inspect("records", school="demo", entity="pupil") == {"records": []}
    assert school.call("GET", "pupil").status_code == 200


def test_records_needs_school_and_entity(api: Api) -> None:
    """GET /_portal/records without its parameters is 400, with an unknown entity 404."""
    bare = api.session.get(f"{api.url}/_portal/records", timeout=10)
    assert bare.status_code == 400
    unknown = api.session.get(
        f"{api.url}/_portal/records", params={"school": "demo", "entity": "x"}, timeout=10
    )
    assert unknown.status_code == 404


# --- many batches ----------------------------------------------------------------------------


def test_many_full_batches_are_all_applied(school: Api) -> None:
    """40 batches of 500 marks over real HTTP are all validated and stored (the speed of this
    is measured by bench/delivery_benchmark.py, not asserted here)."""
    school.batch(
        *[put_op(str(i), "work", f"w{i}", {"lesson": "l5", "kind": "oral"}) for i in range(40)]
    )
    bodies = [
        {
            "operations": [
                put_op(str(j), "mark", f"m{b}-{j}", {"work": f"w{b}", "pupil": "p1", "value": "4-"})
                for j in range(500)
            ]
        }
        for b in range(40)
    ]
    for body in bodies:
        answer = school.call("POST", "batch", json=body)
        assert answer.status_code == 200
        assert all(r["status"] == 201 for r in answer.json()["results"])
    assert school.inspect("counts")["demo"]["mark"] == 20_000
