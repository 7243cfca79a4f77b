"""The runner's parts that need no server: the SLO gate, the numbers, the Locust command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest


def _stats(requests: int, failures: int = 0, p95: float = 10.0) -> dict:
    return {
        "requests": requests,
        "failures": failures,
        "error_rate": failures / requests if requests else 0.0,
        "p95_ms": p95,
    }


def test_slo_met_gives_no_misses(run_module: ModuleType) -> None:
    slo = run_module.Slo(p95_ms={"overall": 100.0, "/search": 50.0})
    assert slo.check(_stats(20, p95=99.0), {"/search": _stats(10, p95=50.0)}) == []


def test_slo_names_the_endpoint_the_value_and_the_bound(run_module: ModuleType) -> None:
    slo = run_module.Slo(p95_ms={"overall": 100.0, "/search": 20.0})
    misses = slo.check(_stats(20, p95=150.0), {"/search": _stats(10, p95=25.5), "/recommend": _stats(10)})
    assert misses == [
        "p95 latency of overall is 150 ms > 100 ms",
        "p95 latency of /search is 25.5 ms > 20 ms",
    ]


def test_slo_counts_any_failure_against_a_zero_error_rate(run_module: ModuleType) -> None:
    slo = run_module.Slo(p95_ms={})
    misses = slo.check(_stats(40, failures=1), {"/recommend": _stats(10, failures=1), "/search": _stats(30)})
    assert misses == [
        "error rate of /recommend is 10.00% (1 of 10 requests failed) > 0.00%",
        "error rate of overall is 2.50% (1 of 40 requests failed) > 0.00%",
    ]
    assert (
        run_module.Slo(p95_ms={}, max_error_rate=0.1).check(
            _stats(40, failures=1), {"/recommend": _stats(10, failures=1)}
        )
        == []
    )


def test_slo_on_an_endpoint_that_got_no_requests_is_missed(run_module: ModuleType) -> None:
    slo = run_module.Slo(p95_ms={"/recommend": 500.0})
    assert slo.check(_stats(5), {"/search": _stats(5)}) == [
        "p95 latency of /recommend: no requests were made, so the SLO cannot be met"
    ]


def test_endpoint_slo_flags_parse(run_module: ModuleType) -> None:
    assert run_module._parse_endpoint_slo("/items/{id}/similar=250") == ("/items/{id}/similar", 250.0)
    with pytest.raises(argparse.ArgumentTypeError, match="expected ENDPOINT=MS"):
        run_module._parse_endpoint_slo("/search")
    with pytest.raises(argparse.ArgumentTypeError, match="'fast' is not a number of ms"):
        run_module._parse_endpoint_slo("/search=fast")


def test_env_bounds_are_replaced_by_flags(run_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADTEST_SLO", "/search=300 /recommend=800")
    monkeypatch.setenv("LOADTEST_SLO_P95_MS", "off")
    args = run_module.build_parser().parse_args(["--slo", "/search=5"])
    assert args.slo == [("/search", 5.0)]
    assert args.slo_p95_ms is None


def test_locust_time_strings(run_module: ModuleType) -> None:
    assert run_module._seconds("90") == 90
    assert run_module._seconds("45s") == 45
    assert run_module._seconds("1h2m3s") == 3723


def test_summary_numbers_come_from_the_request_log(run_module: ModuleType) -> None:
    # Ten /search requests of 10..100 ms ending one second apart, one failed; one /recommend.
    rows = [(1000.0 + i, "/search", 10.0 * (i + 1), int(i != 3), 1) for i in range(10)]
    rows.append((1009.5, "/recommend", 500.0, 1, 2))
    requests = pd.DataFrame(rows, columns=["timestamp", "name", "response_time_ms", "ok", "users"])
    overall, endpoints = run_module.summarize(requests)
    assert list(endpoints) == ["/recommend", "/search"]
    search = endpoints["/search"]
    # The run spans from the first request's start (1000 - 0.01) to the last end (1009.5).
    assert search == {
        "requests": 10,
        "failures": 1,
        "error_rate": 0.1,
        "rps": round(10 / 9.51, 3),
        "mean_ms": 55.0,
        "p50_ms": 55.0,
        "p95_ms": 95.5,
        "p99_ms": 99.1,
        "max_ms": 100.0,
    }
    assert overall["requests"] == 11 and overall["failures"] == 1 and overall["max_ms"] == 500.0
    levels = run_module.by_users(requests)
    assert [(level["users"], level["requests"]) for level in levels] == [(1, 10), (2, 1)]


def test_locust_command_constant_and_step(run_module: ModuleType, tmp_path: Path) -> None:
    parser = run_module.build_parser()
    args = parser.parse_args(["--host", "http://127.0.0.1:9", "--run-time", "5s", "--classes", "SearchUser"])
    command = run_module.locust_command(args, tmp_path)
    assert command[1:5] == ["-m", "locust", "-f", str(run_module.LOCUSTFILE)]
    assert command[-5:] == ["--users", "1", "--spawn-rate", "1", "SearchUser"]
    assert command[command.index("--csv") + 1] == str(tmp_path / "locust")
    assert "--csv-full-history" in command and "--headless" in command

    args = parser.parse_args(["--mode", "step", "--run-time", "30s", "--tags", "search", "similar"])
    command = run_module.locust_command(args, tmp_path)
    assert command[4] == f"{run_module.LOCUSTFILE},{run_module.STEP_SHAPE}"
    assert "--users" not in command
    assert command[-4:] == ["--tags", "search", "similar", "MixedUser"]
