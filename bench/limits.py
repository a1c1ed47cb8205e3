"""Benchmark: the bridge beside its limits, for the same school in interleaved rounds.

    .venv/bin/python bench/limits.py [--pupils 300] [--seed 1] [--rounds 3] [--batch 500]
                                     [--concurrency 4] [--latency MS]
                                     [--only LINE,LINE] [--json]

Generates the school once (``var/bench/limits-PUPILS-SEED/school.sqlite``, reused after), and
the request bodies the bare client sends (the naive exporter's records, in batches of
``--batch``, ``batches-BATCH.jsonl``). Then, in each round, with every receiver a process of its
own started afresh (empty) for its line:

  bare-sink       a bare ``requests`` loop POSTing the prepared batches → bench/sink.py
                  (the transport limit: HTTP and JSON in Python, nothing else)
  bare-portal     the same loop → the reference portal (the portal's own limit)
  naive-portal    bench/naive_exporter.py (read, hash, send new ones in batches, remember the
                  hashes) → the reference portal: the baseline
  bridge-sink     ``asiou-bridge sync`` (full, fresh state, the service's defaults) → bench/sink.py
  bridge-portal   ``asiou-bridge sync`` (full, fresh state, the service's defaults: 4 requests
                  in flight) → the reference portal
  bridge-portal-cN  the same with ``portal.concurrency = N`` (``--concurrency``, default 1: one
                  request at a time, the default before 2026-12-07)

Each line reports records/s (operations sent ÷ wall seconds: the whole sender process for the
naive exporter and the bridge, start-up included; the send loop alone for the bare client), its
ratio to the naive exporter (best ÷ best, and in each round the ratio to the naive run of that
round), and CPU µs per record of the sender (its process and the children it reaped) and of the
receiver (its process, read from /proc). The best round of each line is reported (as timeit
does), and every round is printed. ``--portal-src DIR`` runs the reference portal from another
source tree (``git archive COMMIT bridge | tar -x -C DIR``) to compare its versions.
``--latency MS`` makes the reference portal answer every request that much later (its ``slow``
fault), as a portal across a network does: what requests in flight (``-cN``) are for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bridge.demo.generate import SchoolSpec, generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_exporter import fingerprint, records  # bench/ is not a package

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
CLIENT_ID, SECRET = "asiou-bridge", "demo-secret"
LINES = ("bare-sink", "bare-portal", "naive-portal", "bridge-sink", "bridge-portal")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Receiver:
    """A sink or a reference portal in a process of its own, started empty."""

    def __init__(self, kind: str, folder: Path, portal_src: str | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        if kind == "sink":
            command = [PYTHON, str(BENCH / "sink.py"), "--port", str(port)]
            probe = "/_portal/stats"
        else:
            data = folder / "portal.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{data}{suffix}").unlink(missing_ok=True)
            command = [PYTHON, "-m", "bridge.refportal.server", "--port", str(port)]
            command += ["--data", str(data)]
            probe = "/_portal/counts"
        env, where = dict(os.environ), ROOT
        if portal_src and kind == "portal":  # another tree's portal, to compare versions
            env["PYTHONPATH"], where = portal_src, Path(portal_src)  # -m puts the cwd first
        self.process = subprocess.Popen(
            command, cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(200):
            try:
                requests.get(self.url + probe, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the {kind} did not start")

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def prepare(folder: Path, pupils: int, seed: int, batch: int) -> Path:
    """The school (generated once) and the bare client's request bodies (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    school = folder / "school.sqlite"
    if not school.exists():
        started = time.perf_counter()
        partial = folder / "school.sqlite.part"
        partial.unlink(missing_ok=True)
        generate(sa.create_engine(f"sqlite:///{partial}"), SchoolSpec(pupils=pupils, seed=seed))
        partial.rename(school)
        print(f"generated {school} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    bodies = folder / f"batches-{batch}.jsonl"
    if not bodies.exists():
        partial = folder / f"batches-{batch}.jsonl.part"
        with partial.open("wb") as out:
            pending: list[dict[str, Any]] = []
            for entity, key, payload in records(f"sqlite:///{school}"):
                pending.append(
                    {"id": str(len(pending)), "method": "PUT", "entity": entity,
                     "sourcedId": key, "fingerprint": fingerprint(payload), "data": payload}
                )  # fmt: skip
                if len(pending) == batch:
                    out.write(_body(pending))
                    pending = []
            if pending:
                out.write(_body(pending))
        partial.rename(bodies)
    return bodies


def _body(operations: list[dict[str, Any]]) -> bytes:
    text = json.dumps({"operations": operations}, default=str, ensure_ascii=False)
    return text.encode() + b"\n"


def bare(url: str, bodies: list[bytes], operations: int) -> dict[str, float]:
    """POST the prepared batches one after another; the loop alone is timed."""
    http = requests.Session()
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    token = http.post(f"{url}/oauth/token", data=form, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    batch_url = f"{url}/api/v1/schools/demo/batch"
    started, cpu = time.perf_counter(), own_cpu()
    for body in bodies:
        reply = http.post(batch_url, data=body, headers=headers, timeout=60)
        if reply.status_code != 200:
            raise SystemExit(f"bare client: HTTP {reply.status_code} {reply.text[:200]}")
        reply.json()
    seconds = time.perf_counter() - started
    http.close()
    return {"seconds": seconds, "records": operations, "sender_cpu": own_cpu() - cpu}


def naive(url: str, folder: Path) -> dict[str, float]:
    hashes = folder / "naive-hashes.sqlite"
    hashes.unlink(missing_ok=True)
    command = [PYTHON, str(BENCH / "naive_exporter.py"), "--source", str(folder / "school.sqlite")]
    command += ["--url", url, "--hashes", str(hashes)]
    out, seconds, cpu = _timed(command)
    figures = json.loads(out.strip().splitlines()[-1])
    return {"seconds": seconds, "records": figures["sent"], "sender_cpu": cpu}


def bridge(url: str, folder: Path, batch: int, concurrency: int | None) -> dict[str, float]:
    """``asiou-bridge sync`` with its own config (``concurrency`` None: the service's
    default)."""
    state = folder / "bridge-state.sqlite"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    secret = folder / "portal-secret"
    secret.write_text(SECRET, encoding="utf-8")
    os.chmod(secret, 0o600)
    config = folder / "bridge.toml"
    config.write_text(
        f'[source]\nurl = "sqlite:///{folder / "school.sqlite"}"\n\n'
        f'[state]\nurl = "sqlite:///{state}"\n\n'
        f'[mappings]\ndir = "{ROOT / "mappings"}"\n\n'
        f'[portal]\nurl = "{url}"\nschool = "demo"\nclient_id = "{CLIENT_ID}"\n'
        f'secret_file = "{secret}"\nbatch_size = {batch}\n'
        + ("" if concurrency is None else f"concurrency = {concurrency}\n")
        + "\n"
        "[guard]\nmin_deletes = 1000000000\n",
        encoding="utf-8",
    )
    os.chmod(config, 0o600)
    bridge_command = str(Path(PYTHON).with_name("asiou-bridge"))
    command = [bridge_command, "--config", str(config), "sync", "--json", "--as-of", "2026-06-01"]
    out, seconds, cpu = _timed(command)
    delivery = json.loads(out)["delivery"]
    delivered = sum(sum(c.values()) for c in delivery["delivered"].values())
    refused = sum(delivery["refused"].values())
    if delivery["exit_code"] != 0:
        print(f"bridge: exit code {delivery['exit_code']}", file=sys.stderr)
    return {"seconds": seconds, "records": delivered + refused, "sender_cpu": cpu}


def _timed(command: list[str]) -> tuple[str, float, float]:
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode not in (0,):
        raise SystemExit(f"{command[1]}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout, seconds, cpu


def measure(
    line: str, folder: Path, bodies: list[bytes], operations: int, args: argparse.Namespace
) -> dict[str, float]:
    kind = "sink" if line.endswith("sink") else "portal"
    concurrency = int(line.rsplit("-c", 1)[1]) if "-portal-c" in line else None
    receiver = Receiver(kind, folder, args.portal_src)
    if kind == "portal" and args.latency > 0:  # every answer that much later (a distant portal)
        faults = {"rates": {"slow": 1.0}, "slow_seconds": args.latency / 1000}
        requests.post(f"{receiver.url}/_portal/faults", json=faults, timeout=10).raise_for_status()
    try:
        before = receiver.cpu()
        if line.startswith("bare"):
            figures = bare(receiver.url, bodies, operations)
        elif line.startswith("naive"):
            figures = naive(receiver.url, folder)
        else:
            figures = bridge(receiver.url, folder, args.batch, concurrency)
        figures["receiver_cpu"] = receiver.cpu() - before
    finally:
        receiver.stop()
    records = figures["records"] or 1
    figures["records_per_s"] = figures["records"] / figures["seconds"]
    figures["sender_us_per_record"] = figures["sender_cpu"] / records * 1e6
    figures["receiver_us_per_record"] = figures["receiver_cpu"] / records * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pupils", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="portal.concurrency of bridge-portal-cN"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="ms the portal waits before each answer"
    )
    parser.add_argument("--only", help="comma-separated lines to run (default: all)")
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench"))
    parser.add_argument(
        "--portal-src",
        help="run the reference portal from this source tree (PYTHONPATH), e.g. an older commit",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    known = (*LINES, f"bridge-portal-c{args.concurrency}")
    lines = tuple(args.only.split(",")) if args.only else known
    unknown = set(lines) - set(known)
    if unknown:
        parser.error(f"unknown lines: {', '.join(sorted(unknown))}; lines are {', '.join(known)}")
    folder = Path(args.dir) / f"limits-{args.pupils}-{args.seed}"
    bodies_file = prepare(folder, args.pupils, args.seed, args.batch)
    bodies = bodies_file.read_bytes().splitlines()
    operations = sum(body.count(b'"method": "PUT"') for body in bodies)
    rounds: list[dict[str, dict[str, float]]] = []
    for number in range(1, args.rounds + 1):
        figures = {line: measure(line, folder, bodies, operations, args) for line in lines}
        base = figures.get("naive-portal", {}).get("records_per_s")
        for f in figures.values():
            f["to_naive"] = f["records_per_s"] / base if base else float("nan")
        rounds.append(figures)
        if not args.json:
            print(f"round {number}: " + "; ".join(_short(line, f) for line, f in figures.items()))
            sys.stdout.flush()
    best = {line: max((r[line] for r in rounds), key=_speed) for line in lines}
    if args.json:
        print(json.dumps({"pupils": args.pupils, "seed": args.seed, "batch": args.batch,
                          "best": best, "rounds": rounds}))  # fmt: skip
    else:
        print(table(args, best, rounds))
    return 0


def _speed(figures: dict[str, float]) -> float:
    return figures["records_per_s"]


def _short(line: str, f: dict[str, float]) -> str:
    ratio = f"{f['to_naive']:.2f} x naive" if f["to_naive"] == f["to_naive"] else ""
    return f"{line} {f['records_per_s']:,.0f} rec/s {ratio}".rstrip()


def table(
    args: argparse.Namespace,
    best: dict[str, dict[str, float]],
    rounds: list[dict[str, dict[str, float]]],
) -> str:
    naive = best.get("naive-portal", {}).get("records_per_s")
    out = [
        f"school of {args.pupils} pupils (seed {args.seed}), batches of {args.batch}; "
        f"best of {len(rounds)} rounds",
        f"{'line':<15}{'records':>10}{'seconds':>9}{'records/s':>11}{'x naive':>9}"
        f"  {'x naive, each round':<22}{'sender us/rec':>14}{'receiver us/rec':>17}",
    ]
    for line, f in best.items():
        each = "/".join(f"{r[line]['to_naive']:.2f}" for r in rounds) if naive else ""
        ratio = f"{f['records_per_s'] / naive:.2f}" if naive else ""
        out.append(
            f"{line:<15}{f['records']:>10,.0f}{f['seconds']:>9.2f}{f['records_per_s']:>11,.0f}"
            f"{ratio:>9}  {each:<22}"
            f"{f['sender_us_per_record']:>14.1f}{f['receiver_us_per_record']:>17.1f}"
        )
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
