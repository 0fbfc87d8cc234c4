"""The bounded-concurrency runner (virt_qga.workflows.fleet) and the aggregated exit code."""

from __future__ import annotations

import threading
import time

import pytest

from virt_qga.errors import AgentTimeoutError, BadInputError, DomainNotFoundError, HostError
from virt_qga.exitcodes import ExitCode as X
from virt_qga.workflows import backup as wb
from virt_qga.workflows import fleet


def test_results_come_back_in_the_order_given_whatever_finishes_first() -> None:
    delays = {"a": 0.15, "b": 0.0, "c": 0.05, "d": 0.1}

    def fn(d: str) -> str:
        time.sleep(delays[d])
        return d.upper()

    results = fleet.run_each(list(delays), fn, jobs=4)
    assert [r.domain for r in results] == ["a", "b", "c", "d"]
    assert [r.result for r in results] == ["A", "B", "C", "D"]
    assert all(r.ok and r.exit_code == 0 and r.error is None for r in results)


@pytest.mark.parametrize("jobs", [1, 2, 3, 8])
def test_never_more_than_jobs_at_a_time(jobs: int) -> None:
    lock = threading.Lock()
    running = peak = 0

    def fn(d: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return d

    names = [f"vm{i}" for i in range(12)]
    results = fleet.run_each(names, fn, jobs=jobs)
    assert [r.result for r in results] == names
    assert peak == min(jobs, len(names))


def test_the_calls_really_overlap() -> None:
    start = time.monotonic()
    fleet.run_each([f"vm{i}" for i in range(8)], lambda d: time.sleep(0.2), jobs=8)
    assert time.monotonic() - start < 0.2 * 3  # 8 x 0.2 s one after the other would be 1.6 s


def test_one_domain_failing_does_not_stop_the_others() -> None:
    def fn(d: str) -> str:
        if d == "missing":
            raise DomainNotFoundError("no domain named 'missing'")
        if d == "slow":
            raise AgentTimeoutError("no reply within 1 s", domain="slow", command="guest-ping")
        if d == "buggy":
            raise KeyError("boom")
        return "fine"

    results = fleet.run_each(["ok1", "missing", "slow", "buggy", "ok2"], fn, jobs=2)
    by = {r.domain: r for r in results}
    assert by["ok1"].ok and by["ok2"].ok and by["ok2"].result == "fine"
    assert by["missing"].exit_code == X.DOMAIN and by["missing"].error is not None
    assert by["missing"].error["error"] == "DomainNotFoundError"
    assert by["missing"].error["domain"] == "missing"  # filled in when the error had none
    assert by["slow"].exit_code == X.TIMEOUT and by["slow"].error is not None
    assert by["slow"].error["command"] == "guest-ping"
    assert by["buggy"].exit_code == X.FAILED
    assert by["buggy"].error == {"error": "InternalError", "message": "internal error: KeyError: 'boom'",
                                 "exit_code": 1, "domain": "buggy"}
    assert fleet.aggregate_exit(r.exit_code for r in results) == X.PARTIAL


def test_one_domain_or_one_job_runs_in_the_calling_thread() -> None:
    seen: list[str] = []
    fleet.run_each(["a"], lambda d: seen.append(threading.current_thread().name), jobs=8)
    fleet.run_each(["a", "b"], lambda d: seen.append(threading.current_thread().name), jobs=1)
    assert seen == [threading.current_thread().name] * 3


def test_no_domains_is_no_work() -> None:
    assert fleet.run_each([], lambda d: d) == []
    assert fleet.aggregate_exit([]) == X.OK


@pytest.mark.parametrize("jobs", [0, -1, fleet.MAX_JOBS + 1, True, 2.5])
def test_jobs_out_of_range_is_bad_input(jobs: object) -> None:
    with pytest.raises(BadInputError):
        fleet.run_each(["a"], lambda d: d, jobs=jobs)  # type: ignore[arg-type]


def test_result_document_shape() -> None:
    ok, bad = fleet.run_each(["a", "b"], lambda d: {"domain": d} if d == "a" else
                             (_ for _ in ()).throw(HostError("nope")))
    assert ok.to_dict() == {"domain": "a", "ok": True, "result": {"domain": "a"}, "exit_code": 0}
    d = bad.to_dict()
    assert list(d) == ["domain", "ok", "error", "exit_code"]
    assert d["ok"] is False and d["exit_code"] == 1 and d["error"]["message"].endswith("nope")


@pytest.mark.parametrize(("codes", "expected"), [
    ([0, 0, 0], X.OK),
    ([0, 6], X.PARTIAL),                      # an unknown domain among good ones
    ([0, 4, 0], X.PARTIAL),                   # a stopped agent among good ones
    ([6, 6], X.DOMAIN),                       # all unknown
    ([3, 3, 3], X.AGENT_UNAVAILABLE),
    ([6, 4], X.FAILED),                       # all failed, differently
    ([0, 8], X.MAYBE_FROZEN),
])
def test_aggregate_exit_for_read_only_runs(codes: list[int], expected: int) -> None:
    assert fleet.aggregate_exit(codes) == expected


def test_backup_uses_the_same_aggregation() -> None:
    assert wb.aggregate_exit is fleet.aggregate_exit
