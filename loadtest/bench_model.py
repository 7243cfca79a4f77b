#!/usr/bin/env python
"""How fast does ViT-B/32 encode an image here, how close is that to what the CPU can do, and what
does TorchServe add? A script that prints a table and writes JSON (`make bench-model`), never a test.

    python loadtest/bench_model.py                      # everything, ~5 minutes on 2 cores
    python loadtest/bench_model.py --no-torchserve --reps 10

1. The machine's GEMM rate, measured now: torch matmul of large fp32 and bf16 matrices and an int8
   dynamically quantised Linear (what the int8 model runs), at 1 and 2 threads.
2. Per-image encode time of the image tower (ViT-B/32 with seeded weights: speed does not depend on
   the weights) for fp32, bf16 and int8 at 1 and 2 threads, batch 1 and batch 8.
3. Efficiency = model FLOPs / (time x GEMM rate at the same precision and thread count), FLOPs
   counted by torch.utils.flop_counter.FlopCounterMode.
4. TorchServe's round trip for one JPEG (HTTP, decode, preprocess, batching window, forward) divided
   by the bare forward at the same precision and threads, with the shipped config and with batching
   off (batchSize 1): what the batching window costs a lone request, and what it buys under a burst
   of concurrent clients.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from fashion_clip.embedding import ClipEmbedder, cpu_supports_bf16
from fashion_clip.images import load_rgb

ROOT = Path(__file__).resolve().parents[1]

LOOPBACK = "127.0.0.1"
PRECISIONS = ("fp32", "bf16", "int8")
CONCURRENCY = 8  # clients in the TorchServe burst: one full batch of the shipped config


# --- the machine -----------------------------------------------------------------------------------


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        info["cpu"] = fields.get("Model name", "?")
        info["cpus"] = int(fields.get("CPU(s)", os.cpu_count() or 0))
        info["threads_per_core"] = int(fields.get("Thread(s) per core", 1))
        flags = fields.get("Flags", "").split()
        info["isa"] = [
            flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if flag in flags
        ]
    except (OSError, subprocess.CalledProcessError, ValueError):
        info["cpu"], info["cpus"] = platform.processor(), os.cpu_count()
    info["native_bf16"] = cpu_supports_bf16()
    info["loadavg_before"] = list(os.getloadavg())
    return info


def timed(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    """Median wall time of `fn` in seconds: the median shrugs off a neighbour's burst on a shared box."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per call, from `rounds` rounds of `per_round` calls of each in turn (after one
    warm-up round)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(rounds + 1):
        for name, call in calls.items():
            for _ in range(per_round):
                started = time.perf_counter()
                call()
                if round_:
                    samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def throughput(call: Callable[[], object], concurrency: int, per_client: int) -> float:
    """Requests per second with `concurrency` closed-loop clients."""
    total = concurrency * per_client
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda _: call(), range(concurrency)))  # warm every connection
        started = time.perf_counter()
        list(pool.map(lambda _: call(), range(total)))
        return total / (time.perf_counter() - started)


LARGE_GEMM_N = 2048
# The activations' dtype per precision (int8 takes fp32 in; its weights are qint8).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


def quantized(linear: torch.nn.Linear) -> torch.nn.Module:
    """The Linear as the int8 model runs it: dynamically quantised, qint8 weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's deprecation notice for qint8
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
        )[0]


def large_gemm(precision: str, n: int = LARGE_GEMM_N) -> tuple[Callable[[], object], float]:
    """One n x n x n product at the precision (the machine's GEMM rate), and its FLOPs."""
    dtype = DTYPES[precision]
    x = torch.randn(n, n, dtype=dtype)
    if precision == "int8":
        layer = quantized(torch.nn.Linear(n, n, bias=False))
        return (lambda: layer(x)), 2.0 * n**3
    y = torch.randn(n, n, dtype=dtype)
    return (lambda: torch.matmul(x, y)), 2.0 * n**3


def gemm_rates(threads: int, n: int, reps: int) -> dict[str, float | None]:
    """FLOP/s of one n x n x n product per precision (see large_gemm). None for bf16 on a CPU
    without native bf16: torch emulates it there at ~1 GFLOP/s (a 2048 product takes ~20 s), a rate
    no efficiency should be measured against."""
    torch.set_num_threads(threads)
    rates: dict[str, float | None] = {}
    with torch.inference_mode():
        for precision in DTYPES:
            if precision == "bf16" and not cpu_supports_bf16():
                rates[precision] = None
                continue
            call, flops = large_gemm(precision, n)
            rates[precision] = flops / timed(call, reps)
    return rates


# --- the model -------------------------------------------------------------------------------------


def ensure_model(cache: Path, with_archive: bool) -> tuple[Path, Path | None]:
    """ViT-B/32 with seeded weights in the cache (~600 MB), and its .mar when TorchServe is wanted."""
    sys.path.insert(0, str(ROOT / "model-server"))
    import model_installer  # the installer is a script beside the handler, not a package

    model_dir = cache / "model"
    if not (model_dir / "manifest.json").is_file():
        print(f"installing untrained ViT-B/32 into {model_dir} (once)...", flush=True)
        model_installer.install("untrained", model_dir=model_dir, model_store=None)
    mar = cache / "model-store" / "clip.mar"
    # The archive carries the handler: rebuild it when the handler changed since.
    if with_archive and (not mar.is_file() or model_installer.HANDLER.stat().st_mtime > mar.stat().st_mtime):
        print(f"archiving {mar}...", flush=True)
        model_installer.archive(model_dir, cache / "model-store")
    return model_dir, mar if with_archive else None


def sample_jpeg(seed: int = 0) -> bytes:
    """A smooth photo-like 640x480 JPEG (noise would make an unrealistically large file)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640] / 480.0
    channels = [
        np.sin(x * f + p) * 0.5 + 0.5 for f, p in zip(rng.uniform(1, 6, 3), rng.uniform(0, 3, 3), strict=True)
    ]
    pixels = (np.stack(channels, axis=-1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def count_flops(embedder: ClipEmbedder, pixels: torch.Tensor) -> dict[str, float]:
    """FLOPs of one image through the image tower.

    The MHA fast path is one fused kernel the counter cannot see into, so it is off while counting
    (same maths, verified to 1e-5); CPU attention's kernel gets the standard SDPA formula.
    """

    def sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa_cpu}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            embedder.model.encode_image(pixels)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    by_op = {str(op): float(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {"total": float(counter.get_total_flops()), "by_op": by_op}


def encode_times(model_dir: Path, pixels: torch.Tensor, threads_list: list[int], reps: int) -> list[dict]:
    rows = []
    batch8 = pixels.repeat(8, 1, 1, 1)
    for precision in PRECISIONS:
        embedder = ClipEmbedder(model_dir, precision=precision, threads=threads_list[0])
        for threads in threads_list:
            torch.set_num_threads(threads)
            one = timed(lambda e=embedder: e.encode_pixels(pixels), reps, warmup=3)
            eight = timed(lambda e=embedder: e.encode_pixels(batch8), max(3, reps // 4), warmup=1) / 8
            rows.append(
                {"precision": precision, "threads": threads, "batch1_s": one, "batch8_per_image_s": eight}
            )
            print(
                f"  {precision} x{threads}: {one * 1e3:.1f} ms/image (batch 8: {eight * 1e3:.1f})", flush=True
            )
        del embedder
    return rows


# --- TorchServe ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def torchserve_config(variants: dict[str, dict]) -> str:
    """The shipped config.properties with `models`/`load_models` replaced by named variants of the
    shipped `clip` registration, e.g. {"clip": {}, "clip_b1": {"batchSize": 1, "maxBatchDelay": 0}}."""
    config = re.sub(r"\\\n\s*", "", (ROOT / "model-server" / "config.properties").read_text())
    shipped = json.loads(re.search(r"^models=(.*?\})\s*$", config, re.M | re.S).group(1))["clip"]
    models = {}
    for name, overrides in variants.items():
        models[name] = json.loads(json.dumps(shipped))
        models[name]["1.0"].update(overrides)
    lines = [line for line in config.splitlines() if not line.startswith(("models=", "load_models="))]
    lines += [f"models={json.dumps(models)}", "load_models=" + ",".join(f"{n}=clip.mar" for n in variants)]
    return "\n".join(lines) + "\n"


@contextmanager
def running_torchserve(
    mar: Path, variants: dict[str, dict], env: dict[str, str] | None = None
) -> Iterator[dict]:
    """The real TorchServe on loopback with `variants` of the shipped registration, until every
    worker is READY. Yields {"url", "management", "proc", "workdir", "ready_s"} (ready_s = launch to
    every worker READY, the cold start)."""
    mar = mar.resolve()  # TorchServe runs in its own working directory
    workdir = Path(tempfile.mkdtemp(prefix="bench-torchserve-"))
    tmp = workdir / "tmp"
    tmp.mkdir()
    ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")}
    (workdir / "config.properties").write_text(torchserve_config(variants))
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "TS_INFERENCE_ADDRESS": f"http://{LOOPBACK}:{ports['inference']}",
        "TS_MANAGEMENT_ADDRESS": f"http://{LOOPBACK}:{ports['management']}",
        "TS_METRICS_ADDRESS": f"http://{LOOPBACK}:{ports['metrics']}",
        "TS_GRPC_INFERENCE_PORT": str(ports["grpc_i"]),
        "TS_GRPC_MANAGEMENT_PORT": str(ports["grpc_m"]),
        **(env or {}),
    }
    command = [
        str(Path(sys.executable).parent / "torchserve"),
        "--start", "--foreground", "--ncs", "--disable-token-auth",
        "--ts-config", str(workdir / "config.properties"),
        "--model-store", str(mar.parent),
    ]  # fmt: skip
    log = open(workdir / "torchserve.out", "wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    completed = False
    try:
        deadline = time.monotonic() + 300
        while not all(_worker_ready(ports["management"], name) for name in variants):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (workdir / "torchserve.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"TorchServe did not come up:\n{tail}")
            time.sleep(0.1)
        yield {
            "url": f"http://{LOOPBACK}:{ports['inference']}",
            "management": f"http://{LOOPBACK}:{ports['management']}",
            "proc": proc,
            "workdir": workdir,
            "ready_s": time.perf_counter() - started,
        }
        completed = True
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        if completed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"TorchServe's files kept in {workdir}", file=sys.stderr)


def predict_call(client: httpx.Client, url: str, name: str, image: bytes):
    def call() -> None:
        response = client.post(
            f"{url}/predictions/{name}", content=image, headers={"Content-Type": "application/octet-stream"}
        )
        response.raise_for_status()

    return call


def torchserve_round_trips(mar: Path, image: bytes, precision: str, threads: int, reps: int) -> dict:
    """Sequential single-image requests to the real TorchServe, shipped batching vs batchSize 1."""
    variants = {"clip": {}, "clip_b1": {"batchSize": 1, "maxBatchDelay": 0}}
    env = {"MODEL_SERVER_PRECISION": precision, "MODEL_SERVER_THREADS": str(threads)}
    with running_torchserve(mar, variants, env) as server:
        base = server["url"]
        latency, per_s = {}, {}
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
            for name in variants:
                call = predict_call(client, base, name, image)
                latency[name] = timed(call, reps, warmup=3)
                # A burst: CONCURRENCY clients keep the server busy; batching should pay off here.
                per_s[name] = throughput(call, CONCURRENCY, max(4, reps // 2))
    return {
        "shipped_s": latency["clip"],
        "batch1_s": latency["clip_b1"],
        "concurrency": CONCURRENCY,
        "shipped_images_per_s": per_s["clip"],
        "batch1_images_per_s": per_s["clip_b1"],
    }


def _worker_ready(management_port: int, name: str) -> bool:
    try:
        response = httpx.get(f"http://{LOOPBACK}:{management_port}/models/{name}", timeout=2)
        return response.status_code == 200 and response.json()[0]["workers"][0]["status"] == "READY"
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return False


# --- report ----------------------------------------------------------------------------------------


def publish(result: dict, out: Path, report: Callable[[dict], str]) -> None:
    """Stamp the load average after the run, write the JSON and print the tables."""
    result["loadavg_after"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(report(result))
    print(f"\nwrote {out}")


def gflops(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate / 1e9:.0f}"


def share(achieved: float, rate: float | None) -> str:
    """achieved / rate as a percentage; n/a where there is no native rate (bf16 emulated)."""
    return "n/a" if rate is None else f"{achieved / rate:.0%}"


def report(result: dict) -> str:
    m = result["machine"]
    flops = result["flops_per_image"]
    lines = [
        f"machine: {m['cpu']}, {m['cpus']} CPUs ({m.get('threads_per_core', '?')} thread/core), "
        f"ISA {' '.join(m.get('isa', []))}; torch {m['torch']}; load avg before {m['loadavg_before'][0]:.2f}",
        f"ViT-B/32 image tower: {flops / 1e9:.2f} GFLOPs per image (FlopCounterMode)",
        "",
        f"GEMM rate (GFLOP/s, n={result['gemm_n']}):",
        "| threads | fp32 | bf16 | int8 (dynamic) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for threads, rates in result["gemm"].items():
        lines.append(
            f"| {threads} | {gflops(rates['fp32'])} | {gflops(rates['bf16'])} | {gflops(rates['int8'])} |"
        )
    lines += [
        "",
        "Image encode (ms per image; efficiency = FLOPs / (time x GEMM rate, same precision and threads)):",
        "| precision | threads | batch 1 | batch 8 | GFLOP/s (batch 1) | efficiency b1 | efficiency b8 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["encode"]:
        rate = result["gemm"][str(row["threads"])][row["precision"]]
        achieved = flops / row["batch1_s"]
        lines.append(
            f"| {row['precision']} | {row['threads']} | {row['batch1_s'] * 1e3:.1f} | "
            f"{row['batch8_per_image_s'] * 1e3:.1f} | {achieved / 1e9:.0f} | {share(achieved, rate)} | "
            f"{share(flops / row['batch8_per_image_s'], rate)} |"
        )
    ts = result.get("torchserve")
    if ts:
        bare = ts["bare_forward_s"]
        lines += [
            "",
            f"TorchServe round trip, one 640x480 JPEG, {ts['precision']} x{ts['threads']} thread(s), sequential:",
            "| path | ms | / bare forward |",
            "| --- | ---: | ---: |",
            f"| bare forward (in process) | {bare * 1e3:.1f} | 1.00 |",
            f"| decode + preprocess + forward (in process) | {ts['in_process_s'] * 1e3:.1f} | "
            f"{ts['in_process_s'] / bare:.2f} |",
            f"| TorchServe, batching off (batchSize 1) | {ts['batch1_s'] * 1e3:.1f} | {ts['batch1_s'] / bare:.2f} |",
            f"| TorchServe, shipped config (config.properties batching) | {ts['shipped_s'] * 1e3:.1f} | "
            f"{ts['shipped_s'] / bare:.2f} |",
            "",
            f"TorchServe throughput, {ts['concurrency']} concurrent clients (images/s):",
            "| config | images/s | ms per image |",
            "| --- | ---: | ---: |",
            f"| batching off (batchSize 1) | {ts['batch1_images_per_s']:.1f} | {1e3 / ts['batch1_images_per_s']:.1f} |",
            f"| shipped (config.properties batching) | {ts['shipped_images_per_s']:.1f} | "
            f"{1e3 / ts['shipped_images_per_s']:.1f} |",
        ]
    lines.append(f"\nload avg after: {result['loadavg_after'][0]:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "bench-model")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "reports" / "bench-model.json")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gemm-n", type=int, default=2048)
    parser.add_argument("--no-torchserve", action="store_true", help="skip the TorchServe round trip")
    parser.add_argument(
        "--torchserve-precision", choices=PRECISIONS, default=None, help="default: auto's choice"
    )
    args = parser.parse_args(argv)

    result: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    model_dir, mar = ensure_model(args.cache_dir, with_archive=not args.no_torchserve)
    image = sample_jpeg()

    print("GEMM rates...", flush=True)
    result["gemm_n"] = args.gemm_n
    result["gemm"] = {str(t): gemm_rates(t, args.gemm_n, max(3, args.reps // 3)) for t in args.threads}

    reference = ClipEmbedder(model_dir, precision="fp32", threads=1)
    pixels = reference.preprocess([load_rgb(image)])
    result["flops_per_image"] = count_flops(reference, pixels)["total"]
    del reference

    print("encode times...", flush=True)
    result["encode"] = encode_times(model_dir, pixels, args.threads, args.reps)

    if not args.no_torchserve:
        precision = args.torchserve_precision or ("bf16" if cpu_supports_bf16() else "fp32")
        threads = 1
        print(f"TorchServe round trips ({precision}, {threads} thread)...", flush=True)
        embedder = ClipEmbedder(model_dir, precision=precision, threads=threads)
        bare = timed(lambda: embedder.encode_pixels(pixels), args.reps, warmup=3)
        in_process = timed(
            lambda: embedder.encode_images([embedder.load_image(image)]),
            args.reps,
            warmup=1,
        )
        del embedder
        trips = torchserve_round_trips(mar, image, precision, threads, args.reps)
        result["torchserve"] = {
            "precision": precision,
            "threads": threads,
            "image_bytes": len(image),
            "bare_forward_s": bare,
            "in_process_s": in_process,
            **trips,
        }

    publish(result, args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
