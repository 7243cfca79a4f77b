#!/usr/bin/env python
"""The whole model path on this machine, in one run, as ratios (`make bench`). A script that prints
tables and writes JSON, never a test; nothing here asserts.

    python loadtest/bench.py                    # ~10 minutes on 2 cores
    python loadtest/bench.py --rounds 4 --no-compile --delays 5   # quicker, noisier

1. Encode efficiency of ViT-B/32 (seeded weights: the real architecture and compute) for fp32, bf16,
   int8 at one thread: FLOPs / (time x the n=2048 GEMM rate), next to its ceiling (the forward's own
   GEMMs alone, weights streamed as in a forward), plus each precision's agreement with fp32 (cosine
   over sample catalog photos), and torch.compile's gain and cost.
2. The real TorchServe (untrained ViT-B/32 .mar) behind the real API (uvicorn) over the sample catalog
   index built with the same model: round trip and `/recommend` p50 at concurrency 1 over the bare
   forward, and throughput at concurrency 4 with dynamic batching on and off, for several
   maxBatchDelay values.
3. The shipped config alone: cold start to ready of TorchServe and of the API over a synthetic
   100k x 512 bundle, and peak RSS (VmHWM) of the JVM, the worker and the API after serving.

Both sides of every ratio are timed in the same interleaved rounds: this machine is shared, and a
neighbour's burst must land on the numerator and the denominator alike.

Reuses bench_model.py (GEMM rate, FLOP count, TorchServe launcher) and bench_index.py (clustered
synthetic vectors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch
from annoy import AnnoyIndex
from open_clip.tokenizer import SimpleTokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks are scripts, not a package

import bench_index  # noqa: E402
import bench_model  # noqa: E402
from bench_model import (  # noqa: E402
    DTYPES,
    LOOPBACK,
    ROOT,
    count_flops,
    ensure_model,
    interleaved,
    large_gemm,
    predict_call,
    publish,
    quantized,
    sample_jpeg,
    throughput,
    timed,
)

from fashion_clip.catalog.sample import generate_sample_catalog  # noqa: E402
from fashion_clip.clients import EmbedderSettings, make_client  # noqa: E402
from fashion_clip.embedding import ClipEmbedder, cpu_supports_bf16, resolve_precision  # noqa: E402
from fashion_clip.images import load_rgb  # noqa: E402
from fashion_clip.index.build import _file_digests, _write_bundle_files, build_annoy_index  # noqa: E402
from fashion_clip.index.bundle import FORMAT_VERSION, MANIFEST_FILE, METRIC  # noqa: E402
from fashion_clip.modeldir import read_manifest  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
GIB = 1024**3
# The goals this machine's default path is held to (reported, never asserted).
GOAL_EFFICIENCY = 0.75
GOAL_RECOMMEND_OVER_FORWARD = 1.15
GOAL_MODEL_SERVER_RSS = GIB


# --- 1. encode efficiency --------------------------------------------------------------------------


# The image tower's matrix products for one image: 12 blocks of qkv, attention out, MLP in and out,
# (out features, in features) each, on 50 rows (49 patches + the class token).
VIT_B32_GEMMS = ((2304, 768), (768, 768), (3072, 768), (768, 3072))
VIT_B32_LAYERS = 12
VIT_B32_ROWS = 50


def model_gemms(precision: str) -> tuple[Callable[[], object], float]:
    """The forward's own GEMMs alone, and their FLOPs: the 48 Linear layers of one batch-1 image,
    each with its own weights, run in order as the forward runs them, so the weights stream from
    memory (340 MB at fp32) as they do in a forward instead of staying in cache as one repeated
    product's would. Their rate over the large-matrix rate is the ceiling of batch-1 efficiency:
    what the forward would reach if everything besides its GEMMs (patch embedding, attention, norms,
    activations) cost nothing."""
    dtype = DTYPES[precision]
    layers = [
        torch.nn.Linear(in_features, out_features).to(dtype)
        for _ in range(VIT_B32_LAYERS)
        for out_features, in_features in VIT_B32_GEMMS
    ]
    flops = sum(2.0 * VIT_B32_ROWS * layer.in_features * layer.out_features for layer in layers)
    inputs = {
        layer.in_features: torch.randn(VIT_B32_ROWS, layer.in_features, dtype=dtype) for layer in layers
    }
    modules = [quantized(layer) for layer in layers] if precision == "int8" else layers

    def run() -> None:
        for module, layer in zip(modules, layers, strict=True):
            module(inputs[layer.in_features])

    return run, flops


def encode_section(model_dir: Path, image: bytes, photos: list[bytes], rounds: int, compile_: bool) -> dict:
    """Per precision, at 1 thread: the batch-1 forward, the large-matrix GEMM rate and the forward's
    own GEMMs, taken in interleaved rounds (as the serving latencies are), so that a neighbour's
    burst on this shared machine cannot land on the forward and spare the rate it is divided by
    (measured: two n=2048 rates a minute apart, 85 and 63 GFLOP/s). bf16 is timed but gets no rates
    where the CPU only emulates it (see bench_model.gemm_rates)."""
    torch.set_num_threads(1)
    reference = ClipEmbedder(model_dir, precision="fp32", threads=1)
    pixels = reference.preprocess([load_rgb(image)])
    catalog_pixels = reference.preprocess([load_rgb(data) for data in photos])
    truth = reference.encode_pixels(catalog_pixels)
    flops = count_flops(reference, pixels)["total"]
    del reference
    batch8 = pixels.repeat(8, 1, 1, 1)
    rows = []
    for precision in PRECISIONS:
        embedder = ClipEmbedder(model_dir, precision=precision, threads=1)
        native = precision != "bf16" or cpu_supports_bf16()
        calls: dict[str, Callable[[], object]] = {"forward": lambda e=embedder: e.encode_pixels(pixels)}
        if native:
            # A full TorchServe batch (batchSize 8): what a burst or an index build runs.
            calls["forward8"] = lambda e=embedder: e.encode_pixels(batch8)
            calls["large"], large_flops = large_gemm(precision)
            calls["own"], own_flops = model_gemms(precision)
        # Without native bf16 a forward takes a second: three rounds say enough about it.
        seconds = interleaved(calls, rounds if native else min(rounds, 3), 1)
        cosine = (embedder.encode_pixels(catalog_pixels) * truth).sum(axis=1)
        row = {
            "precision": precision,
            "batch1_s": seconds["forward"],
            "batch8_per_image_s": seconds["forward8"] / 8 if native else None,
            "gemm_rate": large_flops / seconds["large"] if native else None,
            "own_gemm_rate": own_flops / seconds["own"] if native else None,
            "cosine_min": float(cosine.min()),
        }
        rows.append(row)
        rates = (
            f", GEMM {row['gemm_rate'] / 1e9:.0f} GFLOP/s, own GEMMs {row['own_gemm_rate'] / 1e9:.0f}"
            if native
            else ""
        )
        print(
            f"  {precision}: {seconds['forward'] * 1e3:.1f} ms{rates}, cosine to fp32 >= {cosine.min():.6f}",
            flush=True,
        )
        del embedder, calls
    result = {"flops_per_image": flops, "photos": len(photos), "rounds": rounds, "rows": rows}
    if compile_:
        result["compiled"] = compiled_encode(model_dir, pixels, catalog_pixels, truth, rounds)
    return result


def compiled_encode(
    model_dir: Path, pixels: torch.Tensor, catalog_pixels: torch.Tensor, truth: np.ndarray, rounds: int
) -> dict:
    """torch.compile (inductor, frozen weights prepacked for oneDNN) of auto's precision, 1 thread,
    timed in the same rounds as the eager forward it would replace: timed alone, one run here gave
    137 ms against the eager row's 157, and interleaved the two were 166 and 162."""
    precision = resolve_precision("auto")
    embedder = ClipEmbedder(model_dir, precision=precision, threads=1)
    visual = embedder.model.visual
    compiled = torch.compile(visual, options={"freezing": True})
    started = time.perf_counter()
    with torch.inference_mode():
        compiled(pixels.to(embedder.input_dtype))
    compile_s = time.perf_counter() - started

    def encode(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            features = model(batch.to(embedder.input_dtype)).float()
        return torch.nn.functional.normalize(features, dim=-1).numpy()

    seconds = interleaved(
        {"compiled": lambda: encode(compiled, pixels), "eager": lambda: encode(visual, pixels)}, rounds, 1
    )
    cosine = np.concatenate(
        [(encode(compiled, p[None]) * t).sum(axis=1) for p, t in zip(catalog_pixels, truth, strict=True)]
    )
    print(
        f"  {precision} compiled: {seconds['compiled'] * 1e3:.1f} ms, eager in the same rounds "
        f"{seconds['eager'] * 1e3:.1f} ms (compile {compile_s:.0f} s)",
        flush=True,
    )
    return {
        "precision": precision,
        "batch1_s": seconds["compiled"],
        "eager_same_rounds_s": seconds["eager"],
        "compile_s": compile_s,
        "cosine_min": float(cosine.min()),
    }


# --- indexes ---------------------------------------------------------------------------------------


def ensure_catalog_index(cache: Path, model_dir: Path, count: int) -> tuple[Path, Path]:
    """The sample catalog and its index bundle, built in process with the benchmark's model (once)."""
    catalog, index = cache / f"catalog-{count}", cache / f"index-{count}"
    if not (catalog / "catalog.csv").is_file():
        generate_sample_catalog(catalog, count=count, seed=0, overwrite=True)
    if not (index / MANIFEST_FILE).is_file():
        print(f"indexing the {count}-item sample catalog (once)...", flush=True)
        client = make_client(EmbedderSettings(backend="local", model_dir=model_dir))
        build_annoy_index(catalog, index, client, progress=False)
    return catalog, index


def ensure_synthetic_bundle(cache: Path, model_dir: Path, items: int, trees: int) -> Path:
    """A bundle the API accepts: bench_index's clustered unit vectors, a manifest naming the served model."""
    dest = cache / f"synthetic-{items}"
    if (dest / MANIFEST_FILE).is_file():
        return dest
    print(f"building a synthetic {items} x 512 bundle ({trees} trees, once)...", flush=True)
    manifest = read_manifest(model_dir)
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 1.0, (1000, manifest.embed_dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = bench_index.clustered(rng, items, manifest.embed_dim, centres, 1.0)
    annoy = AnnoyIndex(manifest.embed_dim, METRIC)
    annoy.set_seed(0)
    categories = ("t-shirt", "dress", "trousers", "skirt", "jacket", "shoes", "bag", "hat", "scarf")
    records = []
    for position, vector in enumerate(vectors):
        annoy.add_item(position, vector)
        records.append(
            {
                "id": f"syn-{position:06d}",
                "title": f"synthetic item {position}",
                "category": categories[position % len(categories)],
                "color": "grey",
                "price": 10.0,
                "image": f"https://images.example.com/syn-{position:06d}.jpg",
            }
        )
    staging = dest.with_name(dest.name + ".tmp")
    staging.mkdir(parents=True, exist_ok=True)
    _write_bundle_files(staging, annoy, records, trees, n_jobs=-1)
    bundle_manifest = {
        "format_version": FORMAT_VERSION,
        "model": {
            "model_name": manifest.model_name,
            "model_id": manifest.model_id,
            "weights_sha256": manifest.weights_sha256,
            "untrained": manifest.untrained,
            "embed_dim": manifest.embed_dim,
        },
        "dim": manifest.embed_dim,
        "metric": METRIC,
        "trees": trees,
        "item_count": items,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": _file_digests(staging),
        "skipped": [],
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(bundle_manifest, indent=2) + "\n")
    staging.rename(dest)
    return dest


# --- servers ---------------------------------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


# Installed with the CUDA build of torch only (the images take the CPU build): the NVIDIA libraries,
# CUDA's Python bindings, triton, and torch's own CUDA libraries.
CUDA_ONLY = re.compile(r"/site-packages/(nvidia|triton|cuda[^/]*)/|/libtorch_cuda[^/]*\.so|/libc10_cuda\.so")


def cuda_only_rss(pid: int) -> int:
    """Resident bytes of the process's mappings of CUDA-only files (see CUDA_ONLY), now."""
    total, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header: range perms offset dev inode [path]
            counting = len(fields) == 6 and bool(CUDA_ONLY.search(fields[5]))
        elif counting and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def torchserve_processes(launcher: int) -> tuple[int, list[int]]:
    """(the frontend JVM's pid, the Python workers' pids) under TorchServe's launcher."""
    children = psutil.Process(launcher).children(recursive=True)
    java = [p.pid for p in children if p.name() == "java"]
    workers = [p.pid for p in children if "model_service_worker" in " ".join(p.cmdline())]
    return java[0], workers


def worker_threads(workdir: Path) -> list[int]:
    """torch.get_num_threads() in each worker, from the handler's "clip handler ready" log line."""
    text = "\n".join(path.read_text(errors="replace") for path in (workdir / "logs").glob("model_log*.log"))
    return [int(n) for n in re.findall(r"clip handler ready: .*?, (\d+) threads", text)]


@contextmanager
def running_api(index_dir: Path, model_url: str, model_name: str, log: Path) -> Iterator[dict]:
    """`python -m recommender` on loopback in front of TorchServe; yields {"url", "proc", "ready_s"}."""
    port = bench_model.free_port()
    env = {
        **os.environ,
        "RECOMMENDER_HOST": LOOPBACK,
        "RECOMMENDER_PORT": str(port),
        "RECOMMENDER_INDEX_DIR": str(index_dir),
        "RECOMMENDER_EMBEDDER__BACKEND": "torchserve",
        "RECOMMENDER_EMBEDDER__URL": model_url,
        "RECOMMENDER_EMBEDDER__MODEL_NAME": model_name,
        "RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS": "120",
        "RECOMMENDER_LOG_LEVEL": "warning",
    }
    url = f"http://{LOOPBACK}:{port}"
    with open(log, "ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "recommender"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not get ready; see {log}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            yield {"url": url, "proc": proc, "ready_s": time.perf_counter() - started}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def p50_and_rate(call, reps: int, concurrency: int, per_client: int) -> dict:
    """Median latency of sequential calls, then requests/s with `concurrency` closed-loop clients."""
    return {"p50_s": timed(call, reps, warmup=3), "per_s": throughput(call, concurrency, per_client)}


def recommend_call(client: httpx.Client, url: str, image: bytes):
    def call() -> None:
        response = client.post(
            f"{url}/recommend", params={"k": 10}, files={"file": ("q.jpg", image, "image/jpeg")}
        )
        response.raise_for_status()

    return call


def serving_section(
    mar: Path, model_dir: Path, index: Path, image: bytes, variants: dict[str, dict], args, logs: Path
) -> dict:
    """Every batching variant in one TorchServe, each behind its own API, against the bare forward
    in this process at the worker's thread count.

    The latencies are taken in rounds that interleave the bare forward, each variant's TorchServe
    round trip and its `/recommend`, and each is the median over all rounds: on a shared machine a
    neighbour's burst then lands on every series alike instead of on whichever ran at that moment
    (measured here: a bare forward taken after the serving runs came out slower than the round
    trips that contain it).
    """
    env = {"MODEL_SERVER_THREADS": str(args.server_threads)} if args.server_threads else {}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(bench_model.running_torchserve(mar, variants, env))
        threads = worker_threads(server["workdir"])
        apis = {
            name: stack.enter_context(running_api(index, server["url"], name, logs / f"api-{name}.log"))
            for name in variants
        }
        embedder = ClipEmbedder(model_dir, precision="auto", threads=threads[0] if threads else 1)
        pixels = embedder.preprocess([load_rgb(image)])
        limits = httpx.Limits(max_connections=args.concurrency + 1)
        client = stack.enter_context(httpx.Client(timeout=120, limits=limits))
        calls = {
            "bare": lambda: embedder.encode_pixels(pixels),
            "in_process": lambda: embedder.encode_images([embedder.load_image(image)]),
        }
        for name in variants:
            calls[f"{name}/torchserve"] = predict_call(client, server["url"], name, image)
            calls[f"{name}/recommend"] = recommend_call(client, apis[name]["url"], image)
        samples = interleaved(calls, args.rounds, args.per_round)
        rows = {}
        for name, overrides in variants.items():
            rows[name] = {
                "overrides": overrides,
                "torchserve": {
                    "p50_s": samples[f"{name}/torchserve"],
                    "per_s": throughput(calls[f"{name}/torchserve"], args.concurrency, args.per_client),
                },
                "recommend": {
                    "p50_s": samples[f"{name}/recommend"],
                    "per_s": throughput(calls[f"{name}/recommend"], args.concurrency, args.per_client),
                },
            }
            print(
                f"  {name} {overrides}: TorchServe p50 {rows[name]['torchserve']['p50_s'] * 1e3:.1f} ms, "
                f"/recommend p50 {rows[name]['recommend']['p50_s'] * 1e3:.1f} ms, c{args.concurrency} "
                f"{rows[name]['recommend']['per_s']:.1f}/s",
                flush=True,
            )
    print(f"  bare forward {samples['bare'] * 1e3:.1f} ms, in process {samples['in_process'] * 1e3:.1f} ms")
    return {
        "worker_threads": threads,
        "variants": rows,
        "bare_forward_s": samples["bare"],
        "in_process_s": samples["in_process"],
        "rounds": args.rounds,
        "per_round": args.per_round,
    }


def vocabulary_words() -> list[str]:
    """The whole words of CLIP's BPE vocabulary (open_clip's tokenizer): queries drawn from them reach
    every part of the text tower's token table."""
    encoder = SimpleTokenizer().encoder
    words = {token[:-4] for token in encoder if token.endswith("</w>")}
    return sorted(word for word in words if word.isascii() and word.isalpha() and word.islower())


def search_call(client: httpx.Client, url: str, words: list[str], seed: int = 0):
    """`/search` with a new query of 8 random vocabulary words on every call."""
    rng = random.Random(seed)

    def call() -> None:
        response = client.get(f"{url}/search", params={"q": " ".join(rng.sample(words, 8)), "k": 10})
        response.raise_for_status()

    return call


def model_server_rss(rss: dict) -> int:
    """The model server's bytes in an `rss_of` reading: the JVM and its workers."""
    return rss["jvm"] + sum(rss["workers"])


def rss_of(java: int, workers: list[int], api: int) -> dict:
    return {
        "jvm": peak_rss(java),
        "workers": [peak_rss(pid) for pid in workers],
        "workers_cuda_only": [cuda_only_rss(pid) for pid in workers],
        "api": peak_rss(api),
    }


def footprint_section(mar: Path, bundle: Path, image: bytes, args, logs: Path) -> dict:
    """The shipped config alone: cold starts and peak RSS after serving through a 100k-item API,
    then again after `args.texts` text searches of random vocabulary words: the text tower's token
    table is part of the weights' file map and comes in as queries use new tokens."""
    env = {"MODEL_SERVER_THREADS": str(args.server_threads)} if args.server_threads else {}
    with bench_model.running_torchserve(mar, {"clip": {}}, env) as server:
        first = time.perf_counter()
        httpx.post(
            f"{server['url']}/predictions/clip",
            content=image,
            headers={"Content-Type": "application/octet-stream"},
        ).raise_for_status()
        first_s = time.perf_counter() - first
        with running_api(bundle, server["url"], "clip", logs / "api-100k.log") as api:
            with httpx.Client(
                timeout=120, limits=httpx.Limits(max_connections=args.concurrency + 1)
            ) as client:
                served = p50_and_rate(
                    recommend_call(client, api["url"], image), args.reps, args.concurrency, args.per_client
                )
                java, workers = torchserve_processes(server["proc"].pid)
                result = {
                    "torchserve_ready_s": server["ready_s"],
                    "first_prediction_s": first_s,
                    "api_ready_s": api["ready_s"],
                    "recommend_100k": served,
                    "rss": rss_of(java, workers, api["proc"].pid),
                }
                if args.texts:
                    search = search_call(client, api["url"], vocabulary_words())
                    for _ in range(args.texts):
                        search()
                    result["rss_after_texts"] = {
                        "texts": args.texts,
                        **rss_of(java, workers, api["proc"].pid),
                    }
    rss = result["rss"]
    print(
        f"  TorchServe ready in {result['torchserve_ready_s']:.1f} s, API (100k) in {result['api_ready_s']:.1f} s; "
        f"peak RSS JVM {rss['jvm'] / 2**20:.0f} MiB, worker {sum(rss['workers']) / 2**20:.0f} MiB, "
        f"API {rss['api'] / 2**20:.0f} MiB",
        flush=True,
    )
    return result


# --- report ----------------------------------------------------------------------------------------


def report(result: dict) -> str:
    m = result["machine"]
    enc = result["encode"]
    flops = enc["flops_per_image"]
    default = result["default_precision"]
    lines = [
        f"machine: {m['cpu']}, {m['cpus']} CPUs ({m.get('threads_per_core', '?')} thread/core), "
        f"ISA {' '.join(m.get('isa', []))}, native bf16: {m['native_bf16']}; torch {m['torch']}; "
        f"load avg before {m['loadavg_before'][0]:.2f}, after {result['loadavg_after'][0]:.2f}",
        f"ViT-B/32 image tower: {flops / 1e9:.2f} GFLOPs per image; default precision (auto): {default}",
        "",
        "1. Encode, batch 1, 1 thread. efficiency = FLOPs / (time x GEMM rate at n=2048, same run);"
        " ceiling = the forward's own 48 GEMMs alone, weights streamed as in a forward / GEMM rate",
        "| precision | ms | GFLOP/s | GEMM rate | efficiency | own-GEMM ceiling | batch 8: ms/image, efficiency |"
        " cosine to fp32 (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rates = {row["precision"]: row for row in enc["rows"]}
    for row in enc["rows"] + ([enc["compiled"]] if enc.get("compiled") else []):
        precision = row["precision"]
        name = precision + (" compiled" if "compile_s" in row else "")
        achieved = flops / row["batch1_s"]
        gemm, own = rates[precision]["gemm_rate"], rates[precision]["own_gemm_rate"]
        lines.append(
            f"| {name} | {row['batch1_s'] * 1e3:.1f} | {achieved / 1e9:.0f} | "
            + (
                f"{gemm / 1e9:.0f} | {achieved / gemm:.2f} | {own / gemm:.2f} | "
                if gemm is not None
                else "n/a (emulated) | n/a | n/a | "
            )
            + (
                f"{row['batch8_per_image_s'] * 1e3:.1f}, {flops / row['batch8_per_image_s'] / gemm:.2f} | "
                if row.get("batch8_per_image_s")
                else "- | "
            )
            + f"{row['cosine_min']:.6f} |"
        )
    if enc.get("compiled"):
        compiled = enc["compiled"]
        lines.append(
            f"(torch.compile took {compiled['compile_s']:.0f} s before the first answer; eager in the same "
            f"rounds as the compiled row: {compiled['eager_same_rounds_s'] * 1e3:.1f} ms)"
        )
    serving = result["serving"]
    bare = result["bare_forward_s"]
    lines += [
        "",
        f"2. Serving, one 640x480 JPEG, {default}, worker threads {serving['worker_threads']}; bare forward in"
        f" process at the same threads {bare * 1e3:.1f} ms; decode+preprocess+forward in process "
        f"{result['in_process_s'] * 1e3:.1f} ms ({result['in_process_s'] / bare:.2f}x)",
        f"| TorchServe registration | TorchServe p50 ms | ÷ forward | /recommend p50 ms | ÷ forward |"
        f" TorchServe c{result['concurrency']} /s | /recommend c{result['concurrency']} /s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in serving["variants"].items():
        ts, api = row["torchserve"], row["recommend"]
        settings = ", ".join(f"{k} {v}" for k, v in row["overrides"].items()) or "shipped"
        lines.append(
            f"| {name} ({settings}) | {ts['p50_s'] * 1e3:.1f} | {ts['p50_s'] / bare:.2f} | {api['p50_s'] * 1e3:.1f} | "
            f"{api['p50_s'] / bare:.2f} | {ts['per_s']:.1f} | {api['per_s']:.1f} |"
        )
    fp = result["footprint"]
    rss = fp["rss"]
    model_server = model_server_rss(rss)
    lines += [
        "",
        "3. Shipped config alone; peak RSS (VmHWM) after serving through the API over a synthetic"
        f" {result['synthetic_items']}-item bundle",
        "| measure | value |",
        "| --- | ---: |",
        f"| TorchServe cold start to worker READY | {fp['torchserve_ready_s']:.1f} s |",
        f"| first prediction after READY | {fp['first_prediction_s'] * 1e3:.0f} ms |",
        f"| API cold start to /readyz 200 ({result['synthetic_items']} items) | {fp['api_ready_s']:.1f} s |",
        f"| /recommend p50 / c{result['concurrency']} over {result['synthetic_items']} items | "
        f"{fp['recommend_100k']['p50_s'] * 1e3:.1f} ms / {fp['recommend_100k']['per_s']:.1f}/s |",
        f"| RSS TorchServe JVM | {rss['jvm'] / 2**20:.0f} MiB |",
        f"| RSS TorchServe worker | {sum(rss['workers']) / 2**20:.0f} MiB |",
        f"| of which CUDA-only libraries (this venv's CUDA build; not in the CPU image) | "
        f"{sum(rss.get('workers_cuda_only', [0])) / 2**20:.0f} MiB |",
        f"| RSS model server (JVM + worker) | {model_server / 2**20:.0f} MiB |",
        f"| RSS API | {rss['api'] / 2**20:.0f} MiB |",
    ]
    texts = fp.get("rss_after_texts")
    if texts:
        lines.append(
            f"| RSS model server after {texts['texts']} `/search` queries of 8 random vocabulary words "
            f"(the token table paged in) | {model_server_rss(texts) / 2**20:.0f} MiB |"
        )
    head = result["headline"]
    lines += [
        "",
        "Headline ratios against the goals:",
        "| ratio | value | goal |",
        "| --- | ---: | ---: |",
        f"| encode efficiency, {default}, 1 thread | {head['efficiency']:.2f} | >= {GOAL_EFFICIENCY} |",
        f"| its ceiling: the forward's own GEMMs alone | {head['efficiency_ceiling']:.2f} | - |",
        f"| the same at batch 8 (a full TorchServe batch; not the concurrency-1 path) |"
        f" {head['efficiency_batch8']:.2f} | - |",
        f"| TorchServe round trip ÷ bare forward (shipped) | {head['torchserve_over_forward']:.2f} | - |",
        f"| /recommend p50 c1 ÷ bare forward (shipped) | {head['recommend_over_forward']:.2f} |"
        f" <= {GOAL_RECOMMEND_OVER_FORWARD} |",
        f"| /recommend throughput c{result['concurrency']}, batching on ÷ off | {head['batching_gain']:.2f} | - |",
        f"| model server peak RSS | {model_server / GIB:.2f} GiB | <= 1 GiB |",
        f"| the same without CUDA-only libraries | {(model_server - sum(rss.get('workers_cuda_only', [0]))) / GIB:.2f}"
        " GiB | <= 1 GiB |",
    ]
    if texts:
        lines.append(
            f"| the same after {texts['texts']} varied text queries |"
            f" {model_server_rss(texts) / GIB:.2f} GiB | - |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "bench-model")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "reports" / "bench.json")
    parser.add_argument(
        "--reps", type=int, default=20, help="timed repetitions of the 100k-item footprint p50"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="interleaved rounds behind every ratio (encode and serving)"
    )
    parser.add_argument("--per-round", type=int, default=3, help="calls of each kind per round")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--per-client", type=int, default=8, help="requests per client in the burst")
    parser.add_argument("--catalog-count", type=int, default=120)
    parser.add_argument("--synthetic-items", type=int, default=100_000)
    parser.add_argument(
        "--texts", type=int, default=1000, help="text searches before the second RSS reading; 0 skips it"
    )
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument(
        "--delays", type=int, nargs="*", default=[20, 5], help="maxBatchDelay (ms) values with batchSize 8"
    )
    parser.add_argument("--server-threads", type=int, default=0, help="MODEL_SERVER_THREADS; 0 = shipped")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile's measurement")
    args = parser.parse_args(argv)

    result: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": bench_model.machine(),
        "default_precision": resolve_precision("auto"),
        "concurrency": args.concurrency,
        "synthetic_items": args.synthetic_items,
    }
    logs = args.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model_dir, mar = ensure_model(args.cache_dir, with_archive=True)
    catalog, index = ensure_catalog_index(args.cache_dir, model_dir, args.catalog_count)
    bundle = ensure_synthetic_bundle(args.cache_dir, model_dir, args.synthetic_items, args.trees)
    image = sample_jpeg()
    photos = [path.read_bytes() for path in sorted((catalog / "images").iterdir())[:8]]

    print("encode, batch 1, 1 thread, with the GEMM rates in the same rounds...", flush=True)
    result["encode"] = encode_section(model_dir, image, photos, args.rounds, not args.no_compile)

    variants = {"clip": {}, "clip_nobatch": {"batchSize": 1, "maxBatchDelay": 0}}
    variants.update({f"clip_d{d}": {"batchSize": 8, "maxBatchDelay": d} for d in args.delays})
    print(f"serving ({', '.join(variants)})...", flush=True)
    result["serving"] = serving_section(mar, model_dir, index, image, variants, args, logs)
    result["bare_forward_s"] = result["serving"]["bare_forward_s"]
    result["in_process_s"] = result["serving"]["in_process_s"]

    print("footprint and cold starts (shipped config)...", flush=True)
    result["footprint"] = footprint_section(mar, bundle, image, args, logs)

    default = result["default_precision"]
    row = next(r for r in result["encode"]["rows"] if r["precision"] == default)
    shipped, unbatched = result["serving"]["variants"]["clip"], result["serving"]["variants"]["clip_nobatch"]
    result["headline"] = {
        "efficiency": result["encode"]["flops_per_image"] / row["batch1_s"] / row["gemm_rate"],
        "efficiency_ceiling": row["own_gemm_rate"] / row["gemm_rate"],
        "efficiency_batch8": result["encode"]["flops_per_image"]
        / row["batch8_per_image_s"]
        / row["gemm_rate"],
        "torchserve_over_forward": shipped["torchserve"]["p50_s"] / result["bare_forward_s"],
        "recommend_over_forward": shipped["recommend"]["p50_s"] / result["bare_forward_s"],
        "batching_gain": shipped["recommend"]["per_s"] / unbatched["recommend"]["per_s"],
        "model_server_rss_bytes": model_server_rss(result["footprint"]["rss"]),
    }
    if texts := result["footprint"].get("rss_after_texts"):
        result["headline"]["model_server_rss_after_texts_bytes"] = model_server_rss(texts)
    publish(result, args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
