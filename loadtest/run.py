"""Run a Locust load test against the recommender API, draw its plots and apply the SLO gate.

    python loadtest/run.py                                  # 1 user, 60 s, http://127.0.0.1:8000
    python loadtest/run.py --host https://api-xyz.a.run.app --slo-p95-ms 800 --slo /search=300
    python loadtest/run.py --mode step                      # 1 -> 2 -> 4 users

Locust runs as its own process (it monkey-patches the interpreter with gevent); this script only
reads what it writes into the report folder:

    locust_stats.csv, locust_stats_history.csv, locust_failures.csv, locust_exceptions.csv  (Locust)
    report.html      Locust's HTML report          requests.csv   one row per request
    latency_over_time.png, latency_distribution.png, latency_vs_users.png (step mode)
    summary.json     the numbers below and the SLO verdict        locust.log    Locust's output

Exit codes: 0 the SLO is met; 1 the SLO is missed (each miss is named); 2 the run itself failed
(API not ready, Locust could not start or sent nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import plots

logger = logging.getLogger("loadtest")

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
STEP_SHAPE = HERE / "step_shape.py"
DEFAULT_HOST = "http://127.0.0.1:8000"
DEFAULT_REPORTS = HERE / "reports"
CSV_PREFIX = "locust"
OVERALL = "Aggregated"  # Locust's name for the total row; the SLO and summary call it "overall"

EXIT_OK, EXIT_SLO_MISSED, EXIT_RUN_FAILED = 0, 1, 2
# Locust's own exit codes: 0 clean, 1 some request failed (--exit-code-on-error); anything else means
# it did not run the test (3: locustfile.py could not find ids or photos).
LOCUST_RAN = (0, 1)

SUMMARY_KEYS = (
    "name",
    "mode",
    "host",
    "user_classes",
    "tags",
    "users",
    "started_at",
    "duration_s",
    "locust_exit_code",
    "overall",
    "endpoints",
    "by_users",
    "slo",
    "files",
)
STATS_KEYS = ("requests", "failures", "error_rate", "rps", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")


class RunFailed(RuntimeError):
    """The load test did not produce results to judge."""


@dataclass(frozen=True)
class Slo:
    """p95 thresholds in ms per endpoint name ("overall" for all requests) and the error-rate bound."""

    p95_ms: dict[str, float]
    max_error_rate: float = 0.0

    def check(self, overall: dict[str, Any], endpoints: dict[str, dict[str, Any]]) -> list[str]:
        """The misses, one sentence each naming the metric, the endpoint, the value and the bound."""
        misses: list[str] = []
        rows = {**endpoints, "overall": overall}
        for name, stats in rows.items():
            if stats["requests"] and stats["error_rate"] > self.max_error_rate:
                misses.append(
                    f"error rate of {name} is {stats['error_rate']:.2%} ({stats['failures']} of "
                    f"{stats['requests']} requests failed) > {self.max_error_rate:.2%}"
                )
        for name, bound in self.p95_ms.items():
            if name not in rows or not rows[name]["requests"]:
                misses.append(f"p95 latency of {name}: no requests were made, so the SLO cannot be met")
            elif rows[name]["p95_ms"] > bound:
                misses.append(f"p95 latency of {name} is {rows[name]['p95_ms']:g} ms > {bound:g} ms")
        return misses


def _parse_endpoint_slo(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected ENDPOINT=MS, e.g. /search=300, got {text!r}")
    try:
        return name, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number of ms") from exc


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none", "off") else float(text)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    run = parser.add_argument_group("the run")
    run.add_argument(
        "--host", default=env("LOADTEST_HOST", DEFAULT_HOST), help="API base URL ($LOADTEST_HOST)"
    )
    run.add_argument(
        "--mode",
        choices=("constant", "step"),
        default="constant",
        help="constant: --users users throughout; step: --step-users, --step-seconds each",
    )
    run.add_argument(
        "--users", type=int, default=1, help="users in constant mode (1 = Cloud Run concurrency 1)"
    )
    run.add_argument(
        "--run-time",
        default=env("LOADTEST_RUN_TIME", ""),
        help="Locust --run-time, e.g. 60s or 5m (default: 60s constant, the stages + 10s step)",
    )
    run.add_argument(
        "--max-requests",
        type=int,
        default=int(env("LOADTEST_MAX_REQUESTS", "0")),
        help="also stop after this many requests (0: no count bound)",
    )
    run.add_argument(
        "--classes",
        nargs="+",
        default=env("LOADTEST_CLASSES", "MixedUser").split(),
        help="Locust user classes: MixedUser, RecommendUser, SearchUser, SimilarUser",
    )
    run.add_argument("--tags", nargs="*", default=env("LOADTEST_TAGS", "").split(), help="Locust -T tags")
    run.add_argument("--image-dir", default=env("LOADTEST_IMAGE_DIR", ""), help="query photos for /recommend")
    run.add_argument("--image-count", type=int, default=int(env("LOADTEST_IMAGE_COUNT", "8")))
    run.add_argument("--k", type=int, default=int(env("LOADTEST_K", "10")), help="results per request")
    run.add_argument("--think-time", type=float, default=float(env("LOADTEST_THINK_TIME", "0")))
    run.add_argument("--step-users", default=env("LOADTEST_STEP_USERS", "1,2,4"))
    run.add_argument("--step-seconds", type=float, default=float(env("LOADTEST_STEP_SECONDS", "20")))
    run.add_argument(
        "--wait-ready",
        type=float,
        default=float(env("LOADTEST_WAIT_READY", "60")),
        help="seconds to wait for GET /readyz = 200 before starting (0: do not wait)",
    )
    gate = parser.add_argument_group("the SLO gate")
    gate.add_argument(
        "--slo-p95-ms",
        type=_optional_float,
        default=_optional_float(env("LOADTEST_SLO_P95_MS", "")),
        help="p95 bound in ms over all requests (none/off: no overall latency bound)",
    )
    gate.add_argument(
        "--slo",
        action="append",
        type=_parse_endpoint_slo,
        metavar="ENDPOINT=MS",
        help="p95 bound for one endpoint, e.g. /recommend=800 (repeatable; default: $LOADTEST_SLO, space-separated)",
    )
    gate.add_argument(
        "--max-error-rate",
        type=float,
        default=float(env("LOADTEST_MAX_ERROR_RATE", "0")),
        help="largest accepted share of failed requests, per endpoint and overall",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--name", default="", help="report folder name (default: <UTC time>-<mode>)")
    out.add_argument("--reports-dir", type=Path, default=Path(env("LOADTEST_REPORTS", str(DEFAULT_REPORTS))))
    return parser


def wait_ready(host: str, timeout: float) -> None:
    """Wait for the API's readiness; a cold Cloud Run instance or a fresh `make demo` needs a moment."""
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    last = "no answer"
    # The token only ever travels through the environment, never the command line (ps shows that).
    token = os.environ.get("LOADTEST_BEARER_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{host}/readyz", headers=headers, timeout=10.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(1.0)
    raise RunFailed(f"{host}/readyz did not answer 200 within {timeout:g}s (last: {last})")


def locust_command(args: argparse.Namespace, out: Path) -> list[str]:
    files = f"{LOCUSTFILE},{STEP_SHAPE}" if args.mode == "step" else str(LOCUSTFILE)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        files,
        "--headless",
        "--host",
        args.host,
        "--run-time",
        args.run_time,
        "--csv",
        str(out / CSV_PREFIX),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--request-log",
        str(out / "requests.csv"),
        "--max-requests",
        str(args.max_requests),
        "--image-count",
        str(args.image_count),
        "--k",
        str(args.k),
        "--think-time",
        str(args.think_time),
        "--step-users",
        args.step_users,
        "--step-seconds",
        str(args.step_seconds),
    ]
    if args.mode == "constant":
        command += ["--users", str(args.users), "--spawn-rate", str(args.users)]
    if args.image_dir:
        command += ["--image-dir", args.image_dir]
    if args.tags:
        command += ["--tags", *args.tags]
    return [*command, *args.classes]


def run_locust(command: list[str], out: Path, timeout: float) -> int:
    """Run Locust, echo its output and keep a copy in locust.log; kill it if it outlives the timeout."""
    logger.info("running: %s", " ".join(command))
    with open(out / "locust.log", "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                log.write(line)

        # A thread, so a Locust that hangs without printing still meets the timeout below.
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"Locust ran past {timeout:g}s and was killed") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)


def _setup_error(out: Path) -> str:
    """The locustfile's own reason for giving up, if it logged one."""
    for line in (out / "locust.log").read_text(errors="replace").splitlines():
        if "load test setup failed" in line:
            return ": " + line.split("load test setup failed", 1)[1].lstrip(" :")
    return ""


def _seconds(run_time: str) -> float:
    """Locust's time string (1h30m, 90s, 2m) in seconds."""
    total, number = 0.0, ""
    for char in run_time.strip():
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
    return total + (float(number) if number else 0.0)


def _span_seconds(requests: pd.DataFrame) -> float:
    """From the first request's start to the last one's end (timestamps are taken at completion)."""
    starts = requests["timestamp"] - requests["response_time_ms"] / 1000
    return float(requests["timestamp"].max() - starts.min())


def _stats(requests: pd.DataFrame, span: float) -> dict[str, Any]:
    times = requests["response_time_ms"].to_numpy(dtype=float)
    failures = int((requests["ok"] == 0).sum())
    p50, p95, p99 = np.percentile(times, [50, 95, 99]) if len(times) else (0.0, 0.0, 0.0)
    return {
        "requests": len(times),
        "failures": failures,
        "error_rate": failures / len(times) if len(times) else 0.0,
        "rps": round(len(times) / span, 3) if span > 0 else 0.0,
        "mean_ms": round(float(times.mean()), 3) if len(times) else 0.0,
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(times.max()), 3) if len(times) else 0.0,
    }


def read_results(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-request log and Locust's stats history, after checking Locust wrote its files.

    The numbers come from the per-request log: the counts equal Locust's, and the percentiles are
    exact where Locust's (CSV and HTML) are read from rounded buckets.
    """
    for path in (out / f"{CSV_PREFIX}_stats.csv", out / "report.html", out / "requests.csv"):
        if not path.is_file():
            raise RunFailed(f"Locust wrote no {path.name}; see {out / 'locust.log'}")
    requests = pd.read_csv(out / "requests.csv")
    if requests.empty:
        raise RunFailed(f"Locust sent no requests; see {out / 'locust.log'}")
    history = pd.read_csv(out / f"{CSV_PREFIX}_stats_history.csv")
    return requests, history


def summarize(requests: pd.DataFrame) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Overall and per-endpoint numbers; rates are over the whole run, so endpoint rates add up."""
    span = _span_seconds(requests)
    endpoints = {str(name): _stats(group, span) for name, group in requests.groupby("name", sort=True)}
    return _stats(requests, span), endpoints


def by_users(requests: pd.DataFrame) -> list[dict[str, Any]]:
    """Latency and throughput per user count (the step mode's stages) from the per-request log."""
    return [
        {"users": int(users), **_stats(group, _span_seconds(group))}
        for users, group in requests.groupby("users", sort=True)
    ]


def report(summary: dict[str, Any]) -> str:
    """The summary as a table for the terminal."""
    header = f"{'requests':>9}{'fail':>6}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"

    def row(label: object, s: dict[str, Any]) -> str:
        numbers = (s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"])
        return f"{label!s:<24}{s['requests']:>9}{s['failures']:>6}{s['rps']:>8.2f}" + "".join(
            f"{n:>9.1f}" for n in numbers
        )

    lines = [f"{'endpoint':<24}{header}"]
    lines += [row(name, s) for name, s in summary["endpoints"].items()]
    lines.append(row("overall", summary["overall"]))
    if summary["mode"] == "step":
        lines.append(f"{'users':<24}{header}")
        lines += [row(s["users"], s) for s in summary["by_users"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    args.host = args.host.rstrip("/")
    if args.slo is None:  # flags replace the environment's bounds rather than adding to them
        args.slo = [_parse_endpoint_slo(bound) for bound in os.environ.get("LOADTEST_SLO", "").split()]
    stages = [int(n) for n in args.step_users.split(",") if n.strip()]
    if args.mode == "step" and (not stages or min(stages) < 1):
        logger.error("--step-users needs positive user counts, e.g. 1,2,4 (got %r)", args.step_users)
        return EXIT_RUN_FAILED
    if not args.run_time:
        step_total = len(stages) * args.step_seconds + 10
        args.run_time = f"{math.ceil(step_total)}s" if args.mode == "step" else "60s"
    started = datetime.now(UTC)
    name = args.name or f"{started:%Y%m%d-%H%M%S}-{args.mode}"
    out = (args.reports_dir / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    slo = Slo(
        p95_ms={**({"overall": args.slo_p95_ms} if args.slo_p95_ms is not None else {}), **dict(args.slo)},
        max_error_rate=args.max_error_rate,
    )

    try:
        wait_ready(args.host, args.wait_ready)
        # Locust stops itself at --run-time; the margin covers start-up and writing the reports.
        code = run_locust(locust_command(args, out), out, timeout=_seconds(args.run_time) + 120)
        if code not in LOCUST_RAN:
            raise RunFailed(f"Locust exited with {code}{_setup_error(out)}; see {out / 'locust.log'}")
        requests, history = read_results(out)
    except RunFailed as exc:
        logger.error("load test failed: %s", exc)
        return EXIT_RUN_FAILED

    title = f"{args.host}  {' '.join(args.classes)}  ({name})"
    plots.latency_over_time(
        requests, history, out / "latency_over_time.png", slo.p95_ms.get("overall"), title
    )
    plots.latency_distribution(requests, out / "latency_distribution.png", slo.p95_ms.get("overall"), title)
    files = {
        "stats_csv": f"{CSV_PREFIX}_stats.csv",
        "history_csv": f"{CSV_PREFIX}_stats_history.csv",
        "failures_csv": f"{CSV_PREFIX}_failures.csv",
        "requests_csv": "requests.csv",
        "html": "report.html",
        "latency_over_time_png": "latency_over_time.png",
        "latency_distribution_png": "latency_distribution.png",
        "locust_log": "locust.log",
    }
    if args.mode == "step":
        plots.latency_vs_users(requests, out / "latency_vs_users.png", slo.p95_ms.get("overall"), title)
        files["latency_vs_users_png"] = "latency_vs_users.png"

    overall, endpoints = summarize(requests)
    misses = slo.check(overall, endpoints)
    summary = {
        "name": name,
        "mode": args.mode,
        "host": args.host,
        "user_classes": args.classes,
        "tags": args.tags,
        "users": max(stages) if args.mode == "step" else args.users,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(float(requests["timestamp"].max() - requests["timestamp"].min()), 3),
        "locust_exit_code": code,
        "overall": overall,
        "endpoints": endpoints,
        "by_users": by_users(requests),
        "slo": {
            "p95_ms": slo.p95_ms,
            "max_error_rate": slo.max_error_rate,
            "passed": not misses,
            "misses": misses,
        },
        "files": files,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("results:\n%s", report(summary))
    logger.info("reports in %s", out)
    if misses:
        for miss in misses:
            logger.error("SLO missed: %s", miss)
        return EXIT_SLO_MISSED
    logger.info("SLO met: %s", _describe(slo))
    return EXIT_OK


def _describe(slo: Slo) -> str:
    bounds = [f"p95 of {name} <= {ms:g} ms" for name, ms in slo.p95_ms.items()]
    return ", ".join([*bounds, f"error rate <= {slo.max_error_rate:.2%}"])


if __name__ == "__main__":
    sys.exit(main())
