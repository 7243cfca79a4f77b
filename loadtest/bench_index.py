#!/usr/bin/env python
"""Annoy at catalog scale: build time, file size, query latency and recall@k against exact search.

    python loadtest/bench_index.py                       # 100k x 512, trees 10,25,50,100
    python loadtest/bench_index.py --items 20000 --trees 10,50 --queries 200

The data is clustered like real embeddings (garments of one kind sit together): unit vectors drawn
around random cluster centres, queries drawn fresh from the same mixture (not indexed items). The
ground truth is exact cosine search with numpy. Each tree count is queried at Annoy's default
`search_k` (k x trees, what `IndexBundle.search` uses) and at larger multiples of it.
Prints a table and writes the numbers as JSON. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import annoy
import numpy as np
from annoy import AnnoyIndex

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    """CPU model and core count as lscpu reports them, for the table's caption."""
    info = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return info
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Hypervisor vendor"):
        if key in fields:
            info[key.lower().replace("(s)", "s").replace(" ", "_")] = fields[key].strip()
    return info


def clustered(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray, spread: float) -> np.ndarray:
    """`n` unit vectors, each a random centre plus isotropic noise of norm about `spread`."""
    picks = rng.integers(0, len(centres), n)
    points = centres[picks] + rng.normal(0.0, spread / np.sqrt(dim), (n, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    tops = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ data.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        tops.append(np.take_along_axis(part, order, axis=1))
    return np.vstack(tops)


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(0.0, 1.0, (args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = clustered(rng, args.items, args.dim, centres, args.spread)
    queries = clustered(rng, args.queries, args.dim, centres, args.spread)
    truth = exact_top_k(data, queries, args.k)

    exact_times = []
    for query in queries[: min(len(queries), 200)]:
        started = time.perf_counter()
        scores = data @ query
        np.argpartition(-scores, args.k)[: args.k]
        exact_times.append(time.perf_counter() - started)
    rows = [
        {
            "method": "exact (numpy)",
            "trees": None,
            "search_k": None,
            "add_s": None,
            "build_s": None,
            "size_mb": round(data.nbytes / 1e6, 1),
            "p50_ms": round(percentile_ms(exact_times, 50), 3),
            "p95_ms": round(percentile_ms(exact_times, 95), 3),
            "recall": 1.0,
        }
    ]
    print(f"exact numpy search: p50 {rows[0]['p50_ms']} ms", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-index-") as workdir:
        for trees in args.trees:
            index = AnnoyIndex(args.dim, "angular")
            index.set_seed(args.seed)
            started = time.perf_counter()
            for position, vector in enumerate(data):
                index.add_item(position, vector)
            add_s = time.perf_counter() - started
            started = time.perf_counter()
            index.build(trees, n_jobs=args.jobs)
            build_s = time.perf_counter() - started
            path = Path(workdir) / f"trees-{trees}.ann"
            index.save(str(path))
            index.unload()
            size_mb = path.stat().st_size / 1e6
            # Query the saved file as the API does: memory-mapped, warmed by one pass.
            index = AnnoyIndex(args.dim, "angular")
            index.load(str(path))
            for query in queries[:50]:
                index.get_nns_by_vector(query, args.k)
            for factor in args.search_k_factors:
                search_k = factor * args.k * trees
                times, found = [], 0
                for query, expected in zip(queries, truth, strict=True):
                    started = time.perf_counter()
                    result = index.get_nns_by_vector(query, args.k, search_k=search_k)
                    times.append(time.perf_counter() - started)
                    found += len(set(result) & set(expected.tolist()))
                row = {
                    "method": "annoy",
                    "trees": trees,
                    "search_k": search_k,
                    "add_s": round(add_s, 2),
                    "build_s": round(build_s, 2),
                    "size_mb": round(size_mb, 1),
                    "p50_ms": round(percentile_ms(times, 50), 3),
                    "p95_ms": round(percentile_ms(times, 95), 3),
                    "recall": round(found / (args.k * len(queries)), 4),
                }
                rows.append(row)
                print(
                    f"trees {trees:>4}  search_k {search_k:>7}  add {add_s:5.2f}s  build {build_s:6.2f}s  "
                    f"{row['size_mb']:>7.1f} MB  p50 {row['p50_ms']:.3f} ms  recall@{args.k} {row['recall']:.4f}",
                    flush=True,
                )
            index.unload()
            path.unlink()
    return {
        "benchmark": "annoy-angular",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "annoy": getattr(annoy, "__version__", "1.17.3"),
        "machine": machine(),
        "params": {
            "items": args.items,
            "dim": args.dim,
            "clusters": args.clusters,
            "spread": args.spread,
            "queries": args.queries,
            "k": args.k,
            "jobs": args.jobs,
            "seed": args.seed,
        },
        "rows": rows,
    }


def table(result: dict) -> str:
    k = result["params"]["k"]
    lines = [
        f"| index | trees | search_k | build (s) | file (MB) | query p50 (ms) | query p95 (ms) | recall@{k} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    # add_item (a Python loop, the same for every tree count) is in the JSON, not in "build".
    for row in result["rows"]:
        cells = [row["method"]] + [
            "-" if row[key] is None else str(row[key])
            for key in ("trees", "search_k", "build_s", "size_mb", "p50_ms", "p95_ms")
        ]
        lines.append("| " + " | ".join(cells) + f" | {row['recall']:.3f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ints = lambda text: [int(part) for part in text.split(",") if part]  # noqa: E731
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000, help="cluster centres (default: %(default)s)")
    parser.add_argument(
        "--spread", type=float, default=1.0, help="noise norm around a centre (default: %(default)s)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--trees", type=ints, default=[10, 25, 50, 100], help="comma-separated tree counts")
    parser.add_argument(
        "--search-k-factors",
        type=ints,
        default=[1, 10],
        help="search_k = factor x k x trees (1 = Annoy's default)",
    )
    parser.add_argument("--jobs", type=int, default=-1, help="Annoy build threads; -1 = all cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default: loadtest/reports/bench-index-<time>.json)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    out = args.out or HERE / "reports" / f"bench-index-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    described = result["machine"]
    print()
    print(
        f"{result['params']['items']} x {result['params']['dim']} unit vectors in {result['params']['clusters']} "
        f"clusters; {result['params']['queries']} queries; {described.get('model_name', platform.processor())}, "
        f"{described.get('cpus')} CPUs"
    )
    print(table(result))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
