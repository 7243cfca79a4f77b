"""`loadtest/run.py` end to end: real Locust (its own process) against the real API on loopback.

Every run is bounded by a request count (`--max-requests`) and a run time, and stops by itself.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

ENDPOINTS = ["/items/{id}/similar", "/recommend", "/search"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# figsize x dpi in loadtest/plots.py
PNG_SIZES = {
    "latency_over_time.png": (1100, 715),
    "latency_distribution.png": (1210, 495),
    "latency_vs_users.png": (1100, 605),
}
CONSTANT_FILES = {
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
    "report.html",
    "requests.csv",
    "latency_over_time.png",
    "latency_distribution.png",
    "summary.json",
    "locust.log",
}


def run_loadtest(
    run_py: Path, reports: Path, name: str, host: str, *args: str
) -> subprocess.CompletedProcess:
    command = [sys.executable, str(run_py), "--host", host, "--reports-dir", str(reports), "--name", name]
    # The runner reads LOADTEST_* defaults; the test's own flags alone decide this run.
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOADTEST_")}
    return subprocess.run(
        [*command, "--wait-ready", "30", "--run-time", "60s", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def passing_run(run_py: Path, reports: Path, api_url: str) -> tuple[subprocess.CompletedProcess, Path]:
    """60 requests of the mixed user at concurrency 1 against generous bounds."""
    result = run_loadtest(
        run_py,
        reports,
        "pass",
        api_url,
        "--max-requests",
        "60",
        "--slo-p95-ms",
        "60000",
        "--slo",
        "/recommend=60000",
    )
    return result, reports / "pass"


def test_generous_slo_passes(passing_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    result, _ = passing_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "SLO met: p95 of overall <= 60000 ms, p95 of /recommend <= 60000 ms, error rate <= 0.00%"
        in result.stderr
    )
    assert "SLO missed" not in result.stderr


def test_report_folder_holds_every_file(passing_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, out = passing_run
    assert {p.name for p in out.iterdir()} == CONSTANT_FILES
    html = (out / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert all(name in html for name in ENDPOINTS)


def test_locust_stats_csv_counts_every_endpoint(
    passing_run: tuple[subprocess.CompletedProcess, Path],
) -> None:
    _, out = passing_run
    rows = {row["Name"]: row for row in read_csv(out / "locust_stats.csv")}
    assert sorted(rows) == sorted([*ENDPOINTS, "Aggregated"])
    assert all(int(rows[name]["Request Count"]) > 0 for name in ENDPOINTS)
    # Exactly the bound: one user stops at the 60th request; the final CSV has the whole run.
    assert int(rows["Aggregated"]["Request Count"]) == 60
    assert all(row["Failure Count"] == "0" for row in rows.values())
    assert read_csv(out / "locust_failures.csv") == []
    # One snapshot a second: a run this short may hold only the first, so no count is asserted.
    history = read_csv(out / "locust_stats_history.csv")
    assert history and {"Timestamp", "User Count", "Name", "95%", "Total Request Count"} <= set(history[0])
    assert {row["Name"] for row in history} <= {*ENDPOINTS, "Aggregated"}
    assert {row["User Count"] for row in history} <= {"0", "1"}


def test_request_log_has_one_row_per_request(passing_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, out = passing_run
    rows = read_csv(out / "requests.csv")
    assert len(rows) == 60
    assert {row["name"] for row in rows} == set(ENDPOINTS)
    assert {(row["ok"], row["status"], row["users"]) for row in rows} == {("1", "200", "1")}
    assert {row["method"] for row in rows if row["name"] == "/recommend"} == {"POST"}


def test_plots_are_pngs_of_the_drawn_size(passing_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, out = passing_run
    for name in ("latency_over_time.png", "latency_distribution.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 20_000, f"{name} is {len(data)} bytes: nearly empty"
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.size == PNG_SIZES[name]
            # Not a blank canvas: a readable plot has many colours.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 50


def test_summary_json(passing_run: tuple[subprocess.CompletedProcess, Path], run_module: ModuleType) -> None:
    _, out = passing_run
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == list(run_module.SUMMARY_KEYS)
    assert summary["mode"] == "constant"
    assert summary["user_classes"] == ["MixedUser"]
    assert summary["users"] == 1
    assert summary["locust_exit_code"] == 0
    assert sorted(summary["endpoints"]) == ENDPOINTS
    for stats in [summary["overall"], *summary["endpoints"].values()]:
        assert list(stats) == list(run_module.STATS_KEYS)
        assert stats["failures"] == 0 and stats["error_rate"] == 0.0
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    locust_counts = {row["Name"]: int(row["Request Count"]) for row in read_csv(out / "locust_stats.csv")}
    assert {name: s["requests"] for name, s in summary["endpoints"].items()} == {
        name: locust_counts[name] for name in ENDPOINTS
    }
    assert summary["overall"]["requests"] == 60
    assert [level["users"] for level in summary["by_users"]] == [1]
    assert summary["slo"] == {
        "p95_ms": {"overall": 60000.0, "/recommend": 60000.0},
        "max_error_rate": 0.0,
        "passed": True,
        "misses": [],
    }
    assert summary["files"]["html"] == "report.html"
    assert all((out / name).is_file() for name in summary["files"].values())


def test_impossible_latency_slo_fails_and_names_the_metric(run_py: Path, reports: Path, api_url: str) -> None:
    result = run_loadtest(
        run_py,
        reports,
        "too-fast",
        api_url,
        "--max-requests",
        "12",
        "--slo-p95-ms",
        "0.001",
        "--slo",
        "/search=0.001",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "SLO missed: p95 latency of overall is " in result.stderr
    assert "SLO missed: p95 latency of /search is " in result.stderr
    assert "ms > 0.001 ms" in result.stderr
    summary = json.loads((reports / "too-fast" / "summary.json").read_text())
    assert summary["slo"]["passed"] is False
    assert [miss.split(" is ")[0] for miss in summary["slo"]["misses"]] == [
        "p95 latency of overall",
        "p95 latency of /search",
    ]
    assert summary["overall"]["failures"] == 0


def test_failing_endpoint_fails_the_error_rate(
    run_py: Path, reports: Path, api_url: str, tmp_path: Path
) -> None:
    """A "photo" the API rejects (not an image: 415): every /recommend fails, and the gate says so."""
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    result = run_loadtest(
        run_py,
        reports,
        "errors",
        api_url,
        "--classes",
        "RecommendUser",
        "--image-dir",
        str(tmp_path),
        "--max-requests",
        "8",
        "--slo-p95-ms",
        "off",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "SLO missed: error rate of /recommend is 100.00% (8 of 8 requests failed) > 0.00%" in result.stderr
    assert "SLO missed: error rate of overall is 100.00% (8 of 8 requests failed) > 0.00%" in result.stderr
    out = reports / "errors"
    assert {(row["name"], row["ok"], row["status"]) for row in read_csv(out / "requests.csv")} == {
        ("/recommend", "0", "415")
    }
    failures = read_csv(out / "locust_failures.csv")
    assert [(row["Method"], row["Name"], row["Occurrences"]) for row in failures] == [
        ("POST", "/recommend", "8")
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["locust_exit_code"] == 1  # Locust's own verdict on failed requests
    assert summary["endpoints"]["/recommend"]["error_rate"] == 1.0


def test_step_mode_plots_latency_against_users(run_py: Path, reports: Path, api_url: str) -> None:
    result = run_loadtest(
        run_py, reports, "step", api_url, "--mode", "step", "--step-users", "1,2", "--step-seconds", "3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = reports / "step"
    assert {p.name for p in out.iterdir()} == CONSTANT_FILES | {"latency_vs_users.png"}
    with Image.open(out / "latency_vs_users.png") as image:
        assert image.size == PNG_SIZES["latency_vs_users.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "step" and summary["users"] == 2
    assert [level["users"] for level in summary["by_users"]] == [1, 2]
    assert all(level["requests"] > 0 and level["failures"] == 0 for level in summary["by_users"])
    assert summary["slo"]["p95_ms"] == {}


def test_setup_failure_is_a_failed_run(run_py: Path, reports: Path, api_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_loadtest(
        run_py, reports, "no-photos", api_url, "--image-dir", str(missing), "--max-requests", "5"
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"load test failed: Locust exited with 3: --image-dir {missing} is not a folder" in result.stderr
    assert not (reports / "no-photos" / "summary.json").exists()
