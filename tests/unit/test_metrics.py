"""Metrics: runs fold into a registry of their own; the textfile and the HTTP endpoint expose it
in prometheus_client's format, and every label value is a plain word."""

from __future__ import annotations

import platform
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import bridge
from bridge.core.errors import ExitCode, Interrupted, PortalUnavailable, SourceError
from bridge.core.guard import GuardHold
from bridge.core.plan import Plan
from bridge.service.engine import DeliveryReport, PlanResult, SyncResult
from bridge.service.metrics import (
    LABEL_WORD,
    Metrics,
    MetricsServer,
    MetricsSink,
    RunSummary,
    failed_summary,
    summary_from,
)
from tests.conftest import unavailable

T0 = 1_700_000_000.0
Key = tuple[str, frozenset[tuple[str, str]]]
# Every word a label may carry in these tests: entities, operations, reasons, modes, triggers,
# outcomes (and the histogram's bucket bounds, checked apart).
VOCABULARY = {
    "pupil",
    "mark",
    "lesson",
    "create",
    "update",
    "delete",
    "archive",
    "no_consent",
    "grade_1_mark",
    "full",
    "incremental",
    "schedule",
    "manual",
    "ok",
    "partial",
    "held",
    "failed",
    "source_unavailable",
    "auth_failed",
    "interrupted",
}


def first_run() -> RunSummary:
    """A scheduled full run that ended ok after 2 minutes."""
    return RunSummary(
        trigger="schedule",
        mode="full",
        outcome="ok",
        started=T0,
        ended=T0 + 120.0,
        delivered={"pupil": {"create": 10, "update": 2}, "mark": {"create": 100}},
        refused={"mark": 1},
        held_back={"pupil": {"no_consent": 3}},
        rejected={"lesson": 4},
        dead_letters=1,
        pending=0,
    )


def second_run() -> RunSummary:
    """A manual full run, an hour later, held by the guard after 30 seconds."""
    return RunSummary(
        trigger="manual",
        mode="full",
        outcome="held",
        started=T0 + 3600.0,
        ended=T0 + 3630.0,
        delivered={"pupil": {"update": 5}, "mark": {"create": 1, "delete": 0}},
        refused={"mark": 2},
        held_back={"pupil": {"no_consent": 1}, "mark": {"grade_1_mark": 6}},
        rejected={"lesson": 1},
        dead_letters=3,
        pending=7,
    )


def parse(text: str) -> dict[Key, float]:
    """Every sample of an exposition, by name and labels (``_created`` series left out)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def key(name: str, **labels: str) -> Key:
    """The key of one sample in what ``parse`` returns."""
    return name, frozenset(labels.items())


def observed(tmp_path: Path, *summaries: RunSummary) -> dict[Key, float]:
    """Observe the summaries in fresh metrics and read back the textfile they write."""
    metrics = Metrics()
    for summary in summaries:
        metrics.observe(summary)
    target = tmp_path / "bridge.prom"
    metrics.write_textfile(target)
    return parse(target.read_text(encoding="utf-8"))


def fetch(port: int) -> str:
    """GET /metrics from 127.0.0.1 over real HTTP."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def test_counters_add_up_across_runs(tmp_path: Path) -> None:
    """Run and record counters are the sums over every observed run, per label set."""
    samples = observed(tmp_path, first_run(), second_run())
    assert (
        samples[key("asiou_bridge_runs_total", trigger="schedule", mode="full", outcome="ok")]
        == 1.0
    )
    assert (
        samples[key("asiou_bridge_runs_total", trigger="manual", mode="full", outcome="held")]
        == 1.0
    )
    delivered = "asiou_bridge_records_delivered_total"
    assert samples[key(delivered, entity="pupil", op="create")] == 10.0
    assert samples[key(delivered, entity="pupil", op="update")] == 7.0
    assert samples[key(delivered, entity="mark", op="create")] == 101.0
    assert samples[key(delivered, entity="mark", op="delete")] == 0.0
    assert samples[key("asiou_bridge_records_refused_total", entity="mark")] == 3.0


def test_held_back_rejected_and_not_supported_are_the_last_runs_counts(tmp_path: Path) -> None:
    """The same rows are held or rejected again every run: the gauges say what the last run
    found, never a sum over runs, and a label the last run did not find is gone."""
    first = replace(first_run(), rejected={"lesson": 4, "mark": 2}, not_supported={"mark": 9})
    samples = observed(tmp_path, first, second_run())
    held = "asiou_bridge_records_held_back"
    assert samples[key(held, entity="pupil", reason="no_consent")] == 1.0
    assert samples[key(held, entity="mark", reason="grade_1_mark")] == 6.0
    assert samples[key("asiou_bridge_records_rejected", entity="lesson")] == 1.0
    assert key("asiou_bridge_records_rejected", entity="mark") not in samples
    assert key("asiou_bridge_records_not_supported", entity="mark") not in samples
    only_first = observed(tmp_path, first)
    assert only_first[key("asiou_bridge_records_rejected", entity="mark")] == 2.0
    assert only_first[key("asiou_bridge_records_not_supported", entity="mark")] == 9.0
    assert not any(name.endswith("held_back_total") for name, _ in samples)


def test_a_run_that_raised_counts_and_leaves_the_last_plans_gauges(tmp_path: Path) -> None:
    """A run that failed before it had a plan (refused credentials) counts in runs_total with
    its outcome and moves the last-run time, not the last success; the held-back, rejected,
    dead-letter and pending gauges stay those of the last run that planned."""
    failed = failed_summary(
        "auth_failed", "schedule", "full", started=T0 + 7200.0, ended=T0 + 7201.0
    )
    samples = observed(tmp_path, first_run(), failed)
    runs = "asiou_bridge_runs_total"
    assert samples[key(runs, trigger="schedule", mode="full", outcome="auth_failed")] == 1.0
    assert samples[key(runs, trigger="schedule", mode="full", outcome="ok")] == 1.0
    assert samples[key("asiou_bridge_last_run_timestamp_seconds", mode="full")] == T0 + 7201.0
    assert samples[key("asiou_bridge_last_success_timestamp_seconds", mode="full")] == T0 + 120.0
    assert samples[key("asiou_bridge_records_rejected", entity="lesson")] == 4.0
    assert samples[key("asiou_bridge_dead_letters")] == 1.0


def test_seeded_timestamps_are_there_before_any_run(tmp_path: Path) -> None:
    """A restarted daemon seeds the last-run and last-success times from the run history."""
    metrics = Metrics()
    metrics.seed("incremental", last_run=T0 + 60.0, last_success=T0)
    metrics.seed("full", last_run=None, last_success=None)
    target = tmp_path / "bridge.prom"
    metrics.write_textfile(target)
    samples = parse(target.read_text(encoding="utf-8"))
    assert samples[key("asiou_bridge_last_success_timestamp_seconds", mode="incremental")] == T0
    assert samples[key("asiou_bridge_last_run_timestamp_seconds", mode="incremental")] == (
        T0 + 60.0
    )
    assert key("asiou_bridge_last_success_timestamp_seconds", mode="full") not in samples


def test_build_info_names_the_version(tmp_path: Path) -> None:
    """``asiou_bridge_build_info`` is 1, labelled with the bridge's and Python's versions."""
    samples = observed(tmp_path)
    info = {labels: v for (name, labels), v in samples.items() if name == "asiou_bridge_build_info"}
    assert list(info.values()) == [1.0]
    labels = dict(next(iter(info)))
    assert labels["version"] == bridge.__version__
    assert labels["python"] == platform.python_version()


def test_last_success_moves_only_on_ok(tmp_path: Path) -> None:
    """A held run moves the last-run timestamp but leaves the last-success one where ok put it."""
    samples = observed(tmp_path, first_run(), second_run())
    assert samples[key("asiou_bridge_last_success_timestamp_seconds", mode="full")] == T0 + 120.0
    assert samples[key("asiou_bridge_last_run_timestamp_seconds", mode="full")] == T0 + 3630.0
    only_held = observed(tmp_path, second_run())
    assert not any(name == "asiou_bridge_last_success_timestamp_seconds" for name, _ in only_held)


def test_gauges_are_replaced_by_the_latest_run(tmp_path: Path) -> None:
    """Dead letters, pending changes and the last duration are the latest run's, not sums."""
    samples = observed(tmp_path, first_run(), second_run())
    assert samples[key("asiou_bridge_dead_letters")] == 3.0
    assert samples[key("asiou_bridge_pending_changes")] == 7.0
    assert samples[key("asiou_bridge_last_run_duration_seconds", mode="full")] == 30.0
    assert samples[key("asiou_bridge_up")] == 0.0


def test_durations_fill_the_histogram(tmp_path: Path) -> None:
    """Run durations land in the histogram per mode, a six-hour run still in a finite bucket."""
    long_run = RunSummary(
        trigger="schedule", mode="full", outcome="ok", started=T0, ended=T0 + 6 * 3600.0
    )
    samples = observed(tmp_path, first_run(), second_run(), long_run)
    histogram = "asiou_bridge_run_duration_seconds"
    assert samples[key(f"{histogram}_count", mode="full")] == 3.0
    assert samples[key(f"{histogram}_sum", mode="full")] == 120.0 + 30.0 + 6 * 3600.0
    assert samples[key(f"{histogram}_bucket", mode="full", le="30.0")] == 1.0
    assert samples[key(f"{histogram}_bucket", mode="full", le="120.0")] == 2.0
    assert samples[key(f"{histogram}_bucket", mode="full", le="28800.0")] == 3.0


def test_a_clock_stepping_back_counts_as_zero_duration() -> None:
    """A run whose end precedes its start (the wall clock stepped back) lasted 0 seconds."""
    summary = RunSummary(
        trigger="manual", mode="incremental", outcome="ok", started=T0, ended=T0 - 5.0
    )
    assert summary.duration == 0.0


def test_http_endpoint_serves_the_same_families(tmp_path: Path) -> None:
    """Over real HTTP on 127.0.0.1, the endpoint returns exactly what the textfile holds."""
    metrics = Metrics()
    metrics.observe(first_run())
    metrics.observe(second_run())
    target = tmp_path / "bridge.prom"
    metrics.write_textfile(target)
    with metrics.serve("127.0.0.1", 0) as server:
        served = fetch(server.port)
    from_file = list(text_string_to_metric_families(target.read_text(encoding="utf-8")))
    from_http = list(text_string_to_metric_families(served))
    assert from_http == from_file
    assert {f.name for f in from_http} >= {
        "asiou_bridge_runs",
        "asiou_bridge_up",
        "asiou_bridge_run_duration_seconds",
    }


def test_server_close_releases_the_port() -> None:
    """Once closed, the endpoint refuses connections."""
    server = Metrics().serve("127.0.0.1", 0)
    port = server.port
    server.close()
    with pytest.raises(urllib.error.URLError):
        fetch(port)


@pytest.mark.parametrize("name", ["bridge.txt", "bridge", "bridge.prom.tmp", ".prom"])
def test_a_path_without_prom_is_refused(tmp_path: Path, name: str) -> None:
    """A textfile not named *.prom is refused with a ValueError, and nothing is written."""
    with pytest.raises(ValueError, match=r"must end in '\.prom'"):
        Metrics().write_textfile(tmp_path / name)
    with pytest.raises(ValueError, match=r"must end in '\.prom'"):
        MetricsSink(textfile=tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_sink_writes_after_each_run_and_marks_down_on_close(tmp_path: Path) -> None:
    """The sink marks up on start, rewrites the textfile after each run (no temporary file
    left behind), serves the same registry, and writes up = 0 when closed."""
    target = tmp_path / "bridge.prom"
    sink = MetricsSink(textfile=target, listen=("127.0.0.1", 0))
    with sink:
        assert parse(target.read_text(encoding="utf-8"))[key("asiou_bridge_up")] == 1.0
        sink.after_run(first_run())
        assert isinstance(sink.server, MetricsServer)
        served = parse(fetch(sink.server.port))
        assert served == parse(target.read_text(encoding="utf-8"))
        assert (
            served[key("asiou_bridge_runs_total", trigger="schedule", mode="full", outcome="ok")]
            == 1.0
        )
    assert sink.server is None
    assert parse(target.read_text(encoding="utf-8"))[key("asiou_bridge_up")] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["bridge.prom"]


@dataclass
class EndedWith(SyncResult):
    """A sync result that ended with a given exit code, whatever its plan and delivery."""

    code: int = ExitCode.OK

    @property
    def exit_code(self) -> int:
        """The code it was built with."""
        return self.code


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (ExitCode.OK, "ok"),
        (ExitCode.PLAN_HELD, "held"),
        (ExitCode.PARTIAL, "partial"),
        (ExitCode.SOURCE_UNAVAILABLE, "source_unavailable"),
        (ExitCode.PORTAL_AUTH, "auth_failed"),
        (ExitCode.FAILURE, "failed"),
        (ExitCode.USAGE, "failed"),
        (ExitCode.CONFIG, "failed"),
        (99, "failed"),
    ],
)
def test_summary_from_maps_each_exit_code(code: int, outcome: str) -> None:
    """The outcome label follows the result's exit code; any code not listed is "failed"."""
    result = EndedWith(PlanResult(Plan()), DeliveryReport(), code=code)
    summary = summary_from(
        result, "schedule", started=T0, ended=T0 + 1.0, dead_letters=0, pending=0
    )
    assert summary.outcome == outcome


def test_summary_from_real_results() -> None:
    """Real sync results map to ok, held, partial, source_unavailable and interrupted."""
    refused = DeliveryReport(refused=Counter({"mark": 1}))
    cases = {
        "ok": SyncResult(PlanResult(Plan()), DeliveryReport()),
        "held": SyncResult(
            PlanResult(Plan(), guard_holds=[GuardHold("mark", 90, 100)]), DeliveryReport()
        ),
        "partial": SyncResult(PlanResult(Plan()), refused),
        "source_unavailable": SyncResult(
            PlanResult(Plan(), error=SourceError("reading marks", "connection lost")),
            DeliveryReport(),
        ),
    }
    cases["partial too"] = SyncResult(
        PlanResult(Plan(), error=PortalUnavailable(3, "HTTP 503")), DeliveryReport()
    )
    cases["interrupted"] = SyncResult(PlanResult(Plan(), error=Interrupted()), DeliveryReport())
    outcomes = {
        name: summary_from(
            result, "manual", started=T0, ended=T0, dead_letters=0, pending=0
        ).outcome
        for name, result in cases.items()
    }
    assert outcomes == {
        "ok": "ok",
        "held": "held",
        "partial": "partial",
        "source_unavailable": "source_unavailable",
        "partial too": "partial",
        "interrupted": "interrupted",
    }


def test_summary_from_copies_the_counts() -> None:
    """Delivered, refused, held-back and rejected counts, the mode and the totals are copied
    from the result, and later changes to the result do not reach the summary."""
    plan = Plan(
        mode="incremental",
        holds={"pupil": Counter({"no_consent": 2})},
        rejection_counts=Counter({"lesson": 3}),
    )
    delivery = DeliveryReport(
        delivered={"mark": Counter({"create": 4, "delete": 1})}, refused=Counter({"mark": 1})
    )
    summary = summary_from(
        SyncResult(PlanResult(plan), delivery),
        "schedule",
        started=T0,
        ended=T0 + 9.0,
        dead_letters=5,
        pending=6,
    )
    delivery.delivered["mark"]["create"] += 100
    plan.holds["pupil"]["no_consent"] += 100
    assert summary == RunSummary(
        trigger="schedule",
        mode="incremental",
        outcome="partial",
        started=T0,
        ended=T0 + 9.0,
        delivered={"mark": {"create": 4, "delete": 1}},
        refused={"mark": 1},
        held_back={"pupil": {"no_consent": 2}},
        rejected={"lesson": 3},
        dead_letters=5,
        pending=6,
    )


def test_label_values_are_words_only(tmp_path: Path) -> None:
    """Every label value exposed is an entity, operation, reason, mode, trigger or outcome word
    (bucket bounds and the build's version numbers aside)."""
    samples = observed(tmp_path, first_run(), second_run())
    values = {
        value
        for metric, labels in samples
        for name, value in labels
        if name != "le" and metric != "asiou_bridge_build_info"
    }
    assert values
    assert values <= VOCABULARY
    assert all(LABEL_WORD.fullmatch(value) for value in values)


@pytest.mark.parametrize("word", ["Иванов", "pupil 12", "12345", "Pupil", "a@b.ru", ""])
def test_summary_refuses_a_label_value_that_is_not_a_word(word: str) -> None:
    """A summary carrying anything but a lower-case word as entity, op or reason is refused."""
    base = {"trigger": "schedule", "mode": "full", "outcome": "ok", "started": T0, "ended": T0}
    with pytest.raises(ValueError, match="is not a lower-case word"):
        RunSummary(**base, delivered={word: {"create": 1}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a lower-case word"):
        RunSummary(**base, delivered={"pupil": {word: 1}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a lower-case word"):
        RunSummary(**base, held_back={"pupil": {word: 1}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a lower-case word"):
        RunSummary(**base, rejected={word: 1})  # type: ignore[arg-type]


def test_summary_refuses_unknown_choices_and_negative_counts() -> None:
    """Trigger, mode and outcome must be among their words, and no count may be negative."""
    with pytest.raises(ValueError, match="trigger 'cron'"):
        RunSummary(
            trigger="cron",
            mode="full",
            outcome="ok",  # type: ignore[arg-type]
            started=T0,
            ended=T0,
        )
    with pytest.raises(ValueError, match="outcome 'fine'"):
        RunSummary(
            trigger="manual",
            mode="full",
            outcome="fine",  # type: ignore[arg-type]
            started=T0,
            ended=T0,
        )
    with pytest.raises(ValueError, match="negative"):
        RunSummary(
            trigger="manual", mode="full", outcome="ok", started=T0, ended=T0, refused={"mark": -1}
        )
    with pytest.raises(ValueError, match="negative"):
        RunSummary(trigger="manual", mode="full", outcome="ok", started=T0, ended=T0, pending=-1)


def test_an_interrupted_run_is_not_a_success(tmp_path: Path) -> None:
    """A run stopped on request exits 0 yet is counted "interrupted" and leaves last-success."""
    result = SyncResult(PlanResult(Plan(), error=Interrupted()), DeliveryReport())
    assert result.exit_code == ExitCode.OK
    summary = summary_from(
        result, "schedule", started=T0, ended=T0 + 5.0, dead_letters=0, pending=0
    )
    samples = observed(tmp_path, summary)
    assert (
        samples[
            key("asiou_bridge_runs_total", trigger="schedule", mode="full", outcome="interrupted")
        ]
        == 1.0
    )
    assert samples[key("asiou_bridge_last_run_timestamp_seconds", mode="full")] == T0 + 5.0
    assert key("asiou_bridge_last_success_timestamp_seconds", mode="full") not in samples


def test_promtool_finds_nothing_to_lint(tmp_path: Path) -> None:
    """Prometheus's own linter (``promtool check metrics``) accepts the exposition: counters end
    in ``_total``, gauges do not, every family has help text. CI installs promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    metrics = Metrics()
    for summary in (first_run(), second_run()):
        metrics.observe(summary)
    metrics.observe(failed_summary("auth_failed", "manual", "incremental", started=T0, ended=T0))
    metrics.set_up(True)
    target = tmp_path / "bridge.prom"
    metrics.write_textfile(target)
    text = target.read_text(encoding="utf-8")
    linted = subprocess.run(
        [promtool, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "asiou_bridge_records_held_back{" in text  # the gauges were there to be linted
