"""Plots of a load-test run, drawn from Locust's CSV history and the per-request log.

- latency over time: every request as a dot, Locust's rolling p95 per endpoint as a line, and the
  user count and throughput below; the SLO threshold as a dashed line.
- latency distribution: per endpoint, a histogram and the cumulative share of requests under a
  latency (read the p95 where a curve crosses 0.95).
- latency against users (step mode): per user count, the spread of latencies per endpoint; with one
  instance serving one request at a time, p50 grows about linearly with the users waiting.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

AGGREGATED = "Aggregated"
DPI = 110


# Plain numbers (1, 10, 100) on log axes rather than powers of ten.
PLAIN = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")


def _colors(names: list[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {name: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, name in enumerate(names)}


def _slo_line(ax: plt.Axes, slo_ms: float | None, data_max: float, vertical: bool = False) -> None:
    """The SLO as a dashed line, unless it lies far above the data: then only named in the legend,
    so a generous bound does not squash every request into the bottom of the plot."""
    if slo_ms is None:
        return
    style = {"color": "crimson", "linestyle": "--", "linewidth": 1.2}
    if slo_ms > 3 * data_max:
        ax.plot([], [], label=f"SLO p95 {slo_ms:g} ms (off the scale)", **style)
        return
    (ax.axvline if vertical else ax.axhline)(slo_ms, label=f"SLO p95 {slo_ms:g} ms", **style)


def latency_over_time(
    requests: pd.DataFrame, history: pd.DataFrame, path: Path, slo_ms: float | None = None, title: str = ""
) -> Path:
    """Dots per request, Locust's current p95 per endpoint, and users / requests per second below."""
    start = requests["timestamp"].min() if len(requests) else history["Timestamp"].min()
    names = sorted(requests["name"].unique())
    colors = _colors(names)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
    )
    for name in names:
        rows = requests[requests["name"] == name]
        ok = rows[rows["ok"] == 1]
        failed = rows[rows["ok"] == 0]
        if len(ok):
            top.scatter(
                ok["timestamp"] - start,
                ok["response_time_ms"],
                s=8,
                alpha=0.35,
                color=colors[name],
                label=name,
            )
        if len(failed):
            top.scatter(
                failed["timestamp"] - start,
                failed["response_time_ms"],
                s=22,
                marker="x",
                color=colors[name],
                label=f"{name} failed",
            )
        # Locust's rolling percentiles are N/A or 0 until its window holds two snapshots.
        line = history[(history["Name"] == name) & (pd.to_numeric(history["95%"], errors="coerce") > 0)]
        if len(line):  # a run of a second or two may end before Locust's window fills
            top.plot(
                line["Timestamp"] - start, line["95%"], color=colors[name], linewidth=2, label=f"{name} p95"
            )
    highest = float(requests["response_time_ms"].max()) if len(requests) else 1.0
    _slo_line(top, slo_ms, highest)
    # Log scale: a tail ten times the median stays on the plot without squashing the median.
    top.set_yscale("log")
    top.yaxis.set_major_formatter(PLAIN)
    top.set_ylabel("latency (ms, log scale)")
    top.grid(alpha=0.3)
    # Above the axes: inside, it would hide the slowest requests.
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, ncol=4, frameon=False)
    explained = "Latency over time (dots: requests, x: failed; lines: Locust's rolling p95)"
    fig.suptitle(f"{title}\n{explained}" if title else explained, fontsize=10)

    total = history[history["Name"] == AGGREGATED]
    bottom.step(total["Timestamp"] - start, total["User Count"], where="post", color="black", label="users")
    bottom.set_ylabel("users")
    bottom.set_ylim(0, max(1, total["User Count"].max() if len(total) else 1) + 0.5)
    bottom.yaxis.get_major_locator().set_params(integer=True)
    # Throughput counted from the per-request log in 1 s bins: Locust's own req/s is a 10 s rolling
    # average that lags every change of the user count.
    rps = bottom.twinx()
    if len(requests):
        seconds = np.floor(requests["timestamp"] - start).astype(int)
        counts = seconds.value_counts().sort_index().reindex(range(seconds.max() + 1), fill_value=0)
        rps.step(
            counts.index, counts.to_numpy(), where="post", color="tab:gray", linestyle=":", label="req/s"
        )
    rps.set_ylabel("requests/s")
    rps.set_ylim(bottom=0)
    bottom.set_xlabel("seconds since start")
    bottom.grid(alpha=0.3)
    handles = bottom.get_legend_handles_labels()[0] + rps.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, loc="upper left", fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_distribution(
    requests: pd.DataFrame, path: Path, slo_ms: float | None = None, title: str = ""
) -> Path:
    """Histogram and cumulative share of request latencies, one colour per endpoint."""
    names = sorted(requests["name"].unique())
    colors = _colors(names)
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    high = float(requests["response_time_ms"].max()) if len(requests) else 1.0
    low = max(float(requests["response_time_ms"].min()) if len(requests) else 0.1, 0.01)
    # Log-spaced bins on a log axis: latency tails span decades.
    bins = np.geomspace(low * 0.98, high * 1.02 + 1e-9, 50)
    for name in names:
        values = np.sort(requests.loc[requests["name"] == name, "response_time_ms"].to_numpy())
        p50, p95 = np.percentile(values, [50, 95])
        hist.hist(values, bins=bins, histtype="step", linewidth=1.6, color=colors[name], label=name)
        share = np.arange(1, len(values) + 1) / len(values)
        cdf.step(
            values, share, where="post", color=colors[name], label=f"{name}: p50 {p50:.0f}, p95 {p95:.0f} ms"
        )
    hist.set_xscale("log")
    hist.xaxis.set_major_formatter(PLAIN)
    hist.set_xlabel("latency (ms, log scale)")
    hist.set_ylabel("requests")
    hist.grid(alpha=0.3)
    hist.legend(fontsize=8)
    hist.set_title("How many requests took how long")
    cdf.axhline(0.95, color="gray", linewidth=0.8, linestyle=":")
    _slo_line(cdf, slo_ms, high, vertical=True)
    cdf.set_xscale("log")
    cdf.xaxis.set_major_formatter(PLAIN)
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("share of requests at or under")
    cdf.set_ylim(0, 1.02)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    cdf.set_title("Share of requests at or under a latency (dotted: 95%)")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_vs_users(
    requests: pd.DataFrame, path: Path, slo_ms: float | None = None, title: str = ""
) -> Path:
    """Per user count: box plots of latency per endpoint, and p50 / p95 of all requests as lines."""
    rows = requests[requests["users"] > 0]
    levels = sorted(rows["users"].unique())
    names = sorted(rows["name"].unique())
    colors = _colors(names)
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        data = [rows.loc[(rows["users"] == n) & (rows["name"] == name), "response_time_ms"] for n in levels]
        positions = [j + (i - (len(names) - 1) / 2) * width for j in range(len(levels))]
        present = [(p, d) for p, d in zip(positions, data, strict=True) if len(d)]
        if not present:
            continue
        boxes = ax.boxplot(
            [d for _, d in present],
            positions=[p for p, _ in present],
            widths=width * 0.9,
            patch_artist=True,
            showfliers=False,
            whis=(5, 95),
            medianprops={"color": "black"},
        )
        for box in boxes["boxes"]:
            box.set(facecolor=colors[name], alpha=0.45)
        ax.plot([], [], color=colors[name], linewidth=6, alpha=0.45, label=name)
    quantiles = [rows.loc[rows["users"] == n, "response_time_ms"].quantile([0.5, 0.95]) for n in levels]
    ax.plot(range(len(levels)), [q[0.5] for q in quantiles], "o-", color="black", label="all: p50")
    ax.plot(range(len(levels)), [q[0.95] for q in quantiles], "s--", color="black", label="all: p95")
    _slo_line(ax, slo_ms, float(rows["response_time_ms"].max()) if len(rows) else 1.0)
    ax.set_xticks(range(len(levels)), [str(n) for n in levels])
    ax.set_xlabel("concurrent users (requests in flight against the service)")
    ax.set_ylabel("latency (ms); boxes: p25-p75, whiskers p5-p95")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Latency against user count: queueing behind one request at a time")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
