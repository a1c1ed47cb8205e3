"""Benchmark: the client CPU of one request to the dnevnik.ru emulator, layer by layer.

    .venv/bin/python bench/http_floor.py [--requests 2000] [--rounds 2]

Starts the bundled emulator (a process of its own, seeded from a 30-pupil school of 5 days),
then, in interleaved rounds, sends the same GET (``/v2/users/me``, answered 404 with the API's
error envelope: no journal work on the emulator's side) through four layers of the stack the
adapter stands on, each with a connection kept alive, and prints this process's CPU µs and
the wall µs a request:

  session     ``requests.Session.get`` (proxies, netrc and settings merged per request)
  adapter     ``HTTPAdapter.send`` of a prepared request (what the adapter does)
  urllib3     ``HTTPConnectionPool.urlopen``
  http.client ``http.client.HTTPConnection`` (the floor in Python)
"""

from __future__ import annotations

import argparse
import http.client
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import sqlalchemy as sa
import urllib3
from requests.structures import CaseInsensitiveDict

from bridge.demo.generate import SchoolSpec, generate

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"Access-Token": "dnevnik-demo-token", "Accept": "application/json"}
PATH = "/v2/users/me"


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def layers(port: int) -> dict[str, Callable[[], int]]:
    """One request through each layer; each returns the answer's status."""
    url = f"http://127.0.0.1:{port}{PATH}"
    session = requests.Session()
    adapter = session.get_adapter(url)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
    plain = http.client.HTTPConnection("127.0.0.1", port)

    def by_session() -> int:
        reply = session.get(url, headers=HEADERS, timeout=30)
        return reply.status_code

    def by_adapter() -> int:
        prepared = requests.PreparedRequest()
        prepared.method, prepared.url, prepared.body = "GET", url, None
        prepared.headers = CaseInsensitiveDict(HEADERS)
        reply = adapter.send(prepared, stream=True, timeout=(5, 30))
        reply.content  # noqa: B018 - read the body, as the adapter does
        return reply.status_code

    def by_urllib3() -> int:
        reply = pool.urlopen("GET", PATH, headers=HEADERS, preload_content=False, retries=False)
        reply.read()
        return reply.status

    def by_http_client() -> int:
        plain.request("GET", PATH, headers=HEADERS)
        reply = plain.getresponse()
        reply.read()
        return reply.status

    return {
        "session": by_session,
        "adapter": by_adapter,
        "urllib3": by_urllib3,
        "http.client": by_http_client,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        school = Path(folder) / "school.sqlite"
        generate(sa.create_engine(f"sqlite:///{school}"), SchoolSpec(pupils=30, seed=1, days=5))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        emulator = subprocess.Popen(
            [sys.executable, "-m", "bridge", "dnevnik-emulator", "--port", str(port),
             "--data", str(Path(folder) / "emu.sqlite"), "--seed-school", str(school)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(port)
            sends = layers(port)
            print(f"{'layer':<12} {'round':>5} {'CPU us/request':>15} {'wall us/request':>16}")
            for number in range(1, args.rounds + 1):
                for name, send in sends.items():
                    started, used = time.perf_counter(), cpu()
                    statuses = {send() for _ in range(args.requests)}
                    wall, spent = time.perf_counter() - started, cpu() - used
                    if statuses != {404}:
                        raise SystemExit(f"{name}: unexpected statuses {statuses}")
                    print(f"{name:<12} {number:>5} {1e6 * spent / args.requests:>15.0f} "
                          f"{1e6 * wall / args.requests:>16.0f}")  # fmt: skip
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)
    return 0


def wait_for(port: int, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            requests.get(f"http://127.0.0.1:{port}/_emulator/state", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("the emulator did not start")


if __name__ == "__main__":
    sys.exit(main())
