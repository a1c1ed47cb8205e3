"""The dnevnik.ru adapter's HTTP layer (``responses``): the token header, the error envelope,
HTML pages, Retry-After, and a POST never repeated once it may have taken effect."""

from __future__ import annotations

import gzip

import pytest
import requests
import responses

from bridge.adapters.dnevnik.http import DnevnikHttp, OutcomeUnknown, Refused
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.adapters.portal_client import client as client_module
from bridge.core.errors import PortalAuthError, PortalFatalError, PortalUnavailable

BASE = "https://api.example.test/v2/"
TOKEN = "t0ken-secret"


def client(attempts: int = 3) -> tuple[DnevnikHttp, list[float]]:
    slept: list[float] = []
    settings = DnevnikSettings(base_url=BASE, school="1", token=TOKEN, max_attempts=attempts)
    return DnevnikHttp(settings, sleep=slept.append, random=lambda: 0.5), slept


@responses.activate
def test_every_request_carries_the_token_and_reads_the_json() -> None:
    responses.get(f"{BASE}schools/1/edu-groups", json=[{"id": 1, "id_str": "1"}])
    http, _ = client()
    assert http.get("schools/1/edu-groups") == [{"id": 1, "id_str": "1"}]
    assert responses.calls[0].request.headers["Access-Token"] == TOKEN


@responses.activate
def test_a_read_is_retried_past_busy_answers_and_html_pages_honouring_retry_after() -> None:
    url = f"{BASE}edu-groups/5/persons"
    responses.get(url, status=429, headers={"Retry-After": "7"}, json={"type": "x"})
    responses.get(url, status=502, body="<html>bad gateway</html>", content_type="text/html")
    responses.get(url, json=[])
    http, slept = client()
    assert http.get("edu-groups/5/persons") == []
    assert slept[0] >= 7.0
    assert len(slept) == 2
    assert http.retries == 2


@responses.activate
def test_the_error_envelope_refuses_for_good_and_the_token_failure_stops() -> None:
    responses.post(
        f"{BASE}lessons",
        status=400,
        json={"type": "parameterInvalid", "description": "subject 9 is not taught"},
    )
    responses.get(
        f"{BASE}schools/1/subjects",
        status=401,
        json={"type": "authorizationFailed", "description": "token expired"},
    )
    http, _ = client()
    with pytest.raises(Refused) as refused:
        http.post("lessons", {"subject": 9})
    assert (refused.value.status, refused.value.kind) == (400, "parameterInvalid")
    assert refused.value.detail == "subject 9 is not taught"
    with pytest.raises(PortalAuthError) as auth:
        http.get("schools/1/subjects")
    assert TOKEN not in str(auth.value)


@responses.activate
def test_a_post_is_retried_only_while_it_surely_did_nothing() -> None:
    url = f"{BASE}works"
    responses.post(url, status=429, json={"type": "tooMany"})
    responses.post(url, json={"id": 2**60 + 5, "id_str": str(2**60 + 5)})
    http, _ = client()
    assert http.post("works", {"lesson": 1})["id_str"] == str(2**60 + 5)
    assert len(responses.calls) == 2


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503, "json": {"type": "apiServerError", "description": "down"}},
        {"status": 500, "body": "<html>oops</html>", "content_type": "text/html"},
        {"body": requests.exceptions.ConnectionError("Connection reset by peer")},
        {"body": requests.exceptions.ReadTimeout("read timed out")},
    ],
)
def test_a_post_whose_outcome_is_unknown_is_not_sent_again(answer: dict[str, object]) -> None:
    responses.post(f"{BASE}works", **answer)
    http, _ = client()
    with pytest.raises(OutcomeUnknown):
        http.post("works", {"lesson": 1})
    assert len(responses.calls) == 1


@responses.activate
def test_reads_give_up_after_their_attempts() -> None:
    responses.get(f"{BASE}work-types/1", status=503, json={"type": "apiServerError"})
    http, _ = client(attempts=3)
    with pytest.raises(PortalUnavailable, match="after 3 attempts"):
        http.get("work-types/1")
    assert len(responses.calls) == 3


def test_settings_refuse_what_no_adapter_could_use_and_hide_the_token() -> None:
    with pytest.raises(ValueError, match="/v2/"):
        DnevnikSettings(base_url="https://api.example.test/", school="1", token=TOKEN)
    with pytest.raises(ValueError, match="token"):
        DnevnikSettings(base_url=BASE, school="1", token="")
    assert TOKEN not in repr(DnevnikSettings(base_url=BASE, school="1", token=TOKEN))


@responses.activate
def test_a_post_that_never_reached_the_portal_is_sent_again() -> None:
    from urllib3.exceptions import NewConnectionError

    refused = requests.exceptions.ConnectionError(NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    responses.post(f"{BASE}works", body=refused)
    responses.post(f"{BASE}works", json={"id": 3, "id_str": "3"})
    http, slept = client()
    assert http.post("works", {"lesson": 1}) == {"id": 3, "id_str": "3"}
    assert len(responses.calls) == 2
    assert len(slept) == 1


def test_the_environment_is_read_once_proxy_and_ca_bundle_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.school.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/regional-ca.pem")
    http, _ = client()
    session = http._session
    assert session.proxies["https"] == "http://proxy.school.test:3128"
    assert session.verify == "/etc/ssl/regional-ca.pem"
    assert session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "api.example.test")
    assert "https" not in client()[0]._session.proxies


@responses.activate
def test_paths_and_queries_are_encoded_as_requests_encodes_them() -> None:
    """A plain path is joined as is; one with a space or a query is quoted as requests would."""
    responses.get(f"{BASE}edu-groups/5/lessons/2025-09-01/2025-09-01", json=[])
    responses.get(f"{BASE}edu-groups/5/lessons/2025-09-01%2008:00/x", json=[])
    responses.get(f"{BASE}works", json=[])
    http, _ = client()
    http.get("edu-groups/5/lessons/2025-09-01/2025-09-01")
    http.get("/edu-groups/5/lessons/2025-09-01 08:00/x")
    http.get("works", {"lesson": "12", "w": ["a b", "ж"]})
    urls = [call.request.url for call in responses.calls]
    assert urls[0] == f"{BASE}edu-groups/5/lessons/2025-09-01/2025-09-01"
    assert urls[1] == f"{BASE}edu-groups/5/lessons/2025-09-01%2008:00/x"
    expected = requests.Request("GET", f"{BASE}works", params={"lesson": "12", "w": ["a b", "ж"]})
    assert urls[2] == expected.prepare().url


@responses.activate
def test_a_cookie_the_portal_sets_goes_back_with_the_next_requests() -> None:
    """The session's cookies are kept as Session.request would keep them."""
    responses.get(f"{BASE}schools/1", json={}, headers={"Set-Cookie": "lb=a1; Path=/"})
    responses.post(f"{BASE}lessons", json={"id": 1})
    http, _ = client()
    http.get("schools/1")
    http.post("lessons", {"subject": 9})
    assert "Cookie" not in responses.calls[0].request.headers
    assert responses.calls[1].request.headers["Cookie"] == "lb=a1"
    assert responses.calls[1].request.headers["Content-Length"] == str(len(b'{"subject":9}'))


@responses.activate
def test_an_answer_beyond_the_size_limit_is_refused_decoded_size_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A portal sending more than MAX_ANSWER_BYTES (here 4 KiB), plain or as a small gzip that
    inflates beyond it, is a portal error; a smaller answer is read as usual."""
    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 4096)
    big = b"[" + b"1," * 4000 + b"1]"
    responses.get(f"{BASE}plain", body=big, content_type="application/json")
    responses.get(
        f"{BASE}bomb",
        body=gzip.compress(big),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
        auto_calculate_content_length=True,
    )
    responses.get(f"{BASE}small", json=[1, 2])
    http, _ = client()
    for path in ("plain", "bomb"):
        with pytest.raises(PortalFatalError) as caught:
            http.get(path)
        assert caught.value.kind == "answerTooLarge"
        assert "4,096 bytes" in str(caught.value)
    assert len(gzip.compress(big)) < 4096
    assert http.get("small") == [1, 2]
