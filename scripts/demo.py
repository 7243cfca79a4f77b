#!/usr/bin/env python
"""`make demo`: the whole system on this machine, on 127.0.0.1, until Ctrl-C.

1. the model: the real CLIP ViT-B/32 when it can be downloaded, otherwise (offline) the tiny test
   model with a loud warning; kept as it is when `model-server/model` already holds one;
2. the sample catalog and its Annoy index, rebuilt only when the index was built for another model;
3. TorchServe (or, without Java, the API's in-process embedder), the API and the Streamlit UI, each
   waited on until it answers, then the URLs;
4. on Ctrl-C (SIGINT) or SIGTERM, every server is stopped with its whole process group.

Everything is configurable through `DEMO_*` variables (see `DemoSettings`), so a test can run a demo
beside other servers: `DEMO_API_PORT=18000 DEMO_DATA_DIR=/tmp/demo make demo`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
MODEL_NAME = "clip"

logger = logging.getLogger("demo")


class DemoSettings(BaseSettings):
    """`DEMO_*`: ports, folders and choices of the local demo. Relative paths are from the repo root."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", protected_namespaces=())

    ts_port: int = Field(8080, ge=1, le=65535, description="TorchServe inference")
    ts_management_port: int = Field(8081, ge=1, le=65535)
    ts_metrics_port: int = Field(8082, ge=1, le=65535)
    ts_grpc_port: int = Field(7070, ge=1, le=65535, description="TorchServe gRPC inference (loopback)")
    ts_grpc_management_port: int = Field(7071, ge=1, le=65535)
    api_port: int = Field(8000, ge=1, le=65535)
    ui_port: int = Field(8501, ge=1, le=65535)
    data_dir: Path = Path("data")
    model_dir: Path = Path("model-server/model")
    model_store: Path = Path("model-server/model-store")
    catalog_size: int = Field(360, ge=1, description="items in the generated sample catalog")
    embedder: Literal["auto", "torchserve", "local"] = Field(
        "auto", description="auto = TorchServe when Java is installed, else in process"
    )
    offline: bool = Field(False, description="do not try to download the real model (HF_HUB_OFFLINE=1 too)")
    ready_timeout_seconds: float = Field(300, gt=0, description="per server")

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else ROOT / value


class DemoError(Exception):
    """A failure explained in one sentence; the demo stops its servers and exits 1."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived."""


STOP = threading.Event()


def _on_signal(signum: int, _frame: object) -> None:
    if not STOP.is_set():
        logger.info("%s received: stopping...", signal.Signals(signum).name)
    STOP.set()


def check_stop() -> None:
    if STOP.is_set():
        raise Interrupted


def loud(lines: Sequence[str]) -> None:
    """A warning nobody scrolls past."""
    bar = "!" * 78
    logger.warning("\n".join([bar, *(f"!! {line}" for line in lines), bar]))


# Processes --------------------------------------------------------------------------------------


class Proc:
    """A child in its own session (so its whole tree is one process group), output in a log file."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: dict[str, str], cwd: Path):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # closed in stop(): it lives as long as the process
        logger.info("starting %s: %s (log: %s)", name, " ".join(command), log_path)
        self.popen = subprocess.Popen(
            list(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check_stop()
            if not self.alive():
                raise DemoError(
                    f"{self.name} exited with status {self.popen.returncode} before it was ready; "
                    f"the end of {self.log_path}:\n{self.tail()}"
                )
            try:
                if check():
                    return
            except (httpx.HTTPError, OSError):
                pass
            STOP.wait(0.5)
        raise DemoError(f"{self.name} was not ready ({what}) after {timeout:g} s; see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the group, SIGKILL to what is left after `timeout`, and reap."""
        pgid = self.popen.pid  # start_new_session: the pid is the group id
        if self.alive():
            logger.info("stopping %s", self.name)
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children of the leader (TorchServe's Java frontend and its workers) may outlive it.
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pgid):
            logger.warning("%s did not stop within %g s: killing it", self.name, timeout)
            _signal_group(pgid, signal.SIGKILL)
            # Reap the leader (a zombie still counts as a member), then wait for the rest: SIGKILL
            # is delivered asynchronously.
            self.popen.wait(timeout=10)
            deadline = time.monotonic() + 10
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self._log.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still "exists" until reaped; the caller reaps it with wait().
    return True


def run_step(name: str, command: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run a setup step in the foreground with its output on the terminal; Ctrl-C stops it too."""
    logger.info("%s: %s", name, " ".join(str(part) for part in command))
    popen = subprocess.Popen(
        [str(part) for part in command],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    while popen.poll() is None:
        if STOP.wait(0.2):
            _signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
            raise Interrupted
    return popen.returncode


def require_free(port: int, variable: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise DemoError(
                f"Port {port} on {LOOPBACK} is taken ({exc.strerror}): stop what uses it or set {variable}."
            ) from exc


# 1. The model -----------------------------------------------------------------------------------


def network_allowed(settings: DemoSettings) -> bool:
    if settings.offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    # The installer retries for about a minute when offline; one quick probe answers sooner.
    endpoint = httpx.URL(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.host, endpoint.port or 443), timeout=3).close()
    except OSError:
        return False
    return True


def ensure_model(settings: DemoSettings) -> dict:
    """Install a model unless one is there; make sure its .mar exists; return its manifest."""
    model_dir, store = settings.path(settings.model_dir), settings.path(settings.model_store)
    installer = ROOT / "model-server" / "model_installer.py"
    manifest_path = model_dir / "manifest.json"
    places = ["--model-dir", str(model_dir), "--model-store", str(store)]
    warned = False
    if manifest_path.is_file():
        logger.info("model: keeping the one in %s", model_dir)
    else:
        installed = False
        if network_allowed(settings):
            installed = run_step("model", [sys.executable, installer, *places]) == 0
            reason = "The real CLIP ViT-B/32 weights could not be downloaded."
        else:
            reason = "Offline (no route to the model hub, or DEMO_OFFLINE / HF_HUB_OFFLINE set)."
        if not installed:
            loud(
                [
                    f"WARNING: {reason}",
                    "Installing the TINY UNTRAINED test model instead: similarity results are NOT",
                    "meaningful (the API's /info and the UI's banner say so too).",
                    "For real results, with network: rm -r model-server/model && make model",
                    "(or python model-server/model_installer.py), then make demo again.",
                ]
            )
            warned = True
            if run_step("model", [sys.executable, installer, "--tiny", *places]) != 0:
                raise DemoError("The model installer failed (see its output above).")
    manifest = json.loads(manifest_path.read_text())
    mar = store / f"{MODEL_NAME}.mar"
    if not mar.is_file() or mar.stat().st_mtime < manifest_path.stat().st_mtime:
        # A model directory installed by hand, or replaced since it was archived.
        logger.info("model: packaging %s", mar)
        sys.path.insert(0, str(ROOT / "model-server"))
        import model_installer

        try:
            model_installer.archive(model_dir, store)
        except model_installer.InstallError as exc:
            raise DemoError(str(exc)) from exc
    model_id = f"{manifest['model_name']}@{manifest['weights_sha256'][:12]}"
    manifest["model_id"] = model_id
    if manifest.get("untrained") and not warned:
        loud(
            [
                f"The model in {model_dir} ({model_id}) is UNTRAINED:",
                "similarity results are not meaningful. Install the real one with",
                "`python model-server/model_installer.py` (or `make model`) when you have network.",
            ]
        )
    else:
        logger.info("model: %s (%s)", model_id, manifest.get("weights_source"))
    return manifest


# 2. Catalog and index ---------------------------------------------------------------------------


def _entry_point(script: str, module: str) -> list[str | Path]:
    """The project's console script beside this interpreter, or its module when not installed."""
    path = Path(sys.executable).parent / script
    return [path] if path.is_file() else [sys.executable, "-m", module]


def ensure_index(settings: DemoSettings, model: dict) -> Path:
    data = settings.path(settings.data_dir)
    catalog_dir, index_dir = data / "catalog", data / "index"
    index_manifest = index_dir / "manifest.json"
    if index_manifest.is_file():
        built_for = json.loads(index_manifest.read_text()).get("model", {}).get("model_id")
        if built_for == model["model_id"]:
            logger.info("index: %s is built for %s, keeping it", index_dir, built_for)
            return index_dir
        logger.info("index: built for %s, not %s: rebuilding", built_for, model["model_id"])
    if not (catalog_dir / "catalog.csv").is_file() and not (catalog_dir / "catalog.jsonl").is_file():
        command = [*_entry_point("fashion-clip-sample-catalog", "fashion_clip.catalog.sample"), catalog_dir]
        if run_step("catalog", [*command, "--force", "--count", str(settings.catalog_size)]) != 0:
            raise DemoError("Generating the sample catalog failed (see its output above).")
    # Built in process with the same embedding core TorchServe runs, so the vectors agree.
    command = [
        *_entry_point("fashion-clip-build-index", "fashion_clip.index.build"),
        catalog_dir,
        "--out",
        index_dir,
        "--backend",
        "local",
        "--model-dir",
        settings.path(settings.model_dir),
    ]
    if run_step("index", command) != 0:
        raise DemoError("Building the index failed (see its output above).")
    return index_dir


# 3. Servers -------------------------------------------------------------------------------------


def http_ok(url: str, method: str = "GET", **kwargs: object) -> bool:
    return httpx.request(method, url, timeout=5.0, **kwargs).status_code == 200


def torchserve_ports(settings: DemoSettings) -> list[tuple[int, str]]:
    return [
        (settings.ts_port, "DEMO_TS_PORT"),
        (settings.ts_management_port, "DEMO_TS_MANAGEMENT_PORT"),
        (settings.ts_metrics_port, "DEMO_TS_METRICS_PORT"),
        (settings.ts_grpc_port, "DEMO_TS_GRPC_PORT"),
        (settings.ts_grpc_management_port, "DEMO_TS_GRPC_MANAGEMENT_PORT"),
    ]


def start_torchserve(settings: DemoSettings, runtime: Path, procs: list[Proc]) -> None:
    for port, variable in torchserve_ports(settings):
        require_free(port, variable)
    cwd = runtime / "torchserve"  # TorchServe writes logs/ and key_file.json into its cwd
    cwd.mkdir(parents=True, exist_ok=True)
    store = settings.path(settings.model_store)
    env = {
        # config.properties is written for the container; these point it at this machine.
        "TS_INFERENCE_ADDRESS": f"http://{LOOPBACK}:{settings.ts_port}",
        "TS_MANAGEMENT_ADDRESS": f"http://{LOOPBACK}:{settings.ts_management_port}",
        "TS_METRICS_ADDRESS": f"http://{LOOPBACK}:{settings.ts_metrics_port}",
        "TS_GRPC_INFERENCE_ADDRESS": LOOPBACK,
        "TS_GRPC_MANAGEMENT_ADDRESS": LOOPBACK,
        "TS_GRPC_INFERENCE_PORT": str(settings.ts_grpc_port),
        "TS_GRPC_MANAGEMENT_PORT": str(settings.ts_grpc_management_port),
        "TS_MODEL_STORE": str(store),
        "TS_ALLOWED_URLS": f"file://{store}/.*",
        "LOG_LOCATION": str(cwd / "logs"),
        "METRICS_LOCATION": str(cwd / "logs"),
    }
    command = [
        str(Path(sys.executable).parent / "torchserve"),
        "--start",
        "--foreground",
        "--ts-config",
        str(ROOT / "model-server" / "config.properties"),
        "--model-store",
        str(store),
        "--models",
        f"{MODEL_NAME}={MODEL_NAME}.mar",
        "--disable-token-auth",
        "--ncs",
    ]
    proc = Proc("torchserve", command, runtime / "logs" / "torchserve.log", env, cwd)
    procs.append(proc)
    # Ready means a worker answers, not just that the frontend is up.
    url = f"http://{LOOPBACK}:{settings.ts_port}/predictions/{MODEL_NAME}"
    proc.wait_ready(
        lambda: http_ok(url, "POST", json={"text": "ready?"}),
        settings.ready_timeout_seconds,
        f"POST {url}",
    )


def start_api(
    settings: DemoSettings, runtime: Path, index_dir: Path, backend: str, procs: list[Proc]
) -> None:
    require_free(settings.api_port, "DEMO_API_PORT")
    env = {
        "RECOMMENDER_HOST": LOOPBACK,
        "RECOMMENDER_PORT": str(settings.api_port),
        "RECOMMENDER_INDEX_DIR": str(index_dir),
        "RECOMMENDER_EMBEDDER__BACKEND": backend,
        "RECOMMENDER_EMBEDDER__URL": f"http://{LOOPBACK}:{settings.ts_port}",
        "RECOMMENDER_EMBEDDER__MODEL_NAME": MODEL_NAME,
        "RECOMMENDER_EMBEDDER__MODEL_DIR": str(settings.path(settings.model_dir)),
    }
    proc = Proc("api", [sys.executable, "-m", "recommender"], runtime / "logs" / "api.log", env, ROOT)
    procs.append(proc)
    url = f"http://{LOOPBACK}:{settings.api_port}/readyz"
    proc.wait_ready(lambda: http_ok(url), settings.ready_timeout_seconds, f"GET {url}")


def start_ui(settings: DemoSettings, runtime: Path, procs: list[Proc]) -> None:
    require_free(settings.ui_port, "DEMO_UI_PORT")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "frontend" / "app.py"),
        "--server.headless=true",
        f"--server.address={LOOPBACK}",
        f"--server.port={settings.ui_port}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",
    ]
    env = {"FRONTEND_API_URL": f"http://{LOOPBACK}:{settings.api_port}"}
    proc = Proc("ui", command, runtime / "logs" / "ui.log", env, ROOT)
    procs.append(proc)
    url = f"http://{LOOPBACK}:{settings.ui_port}/_stcore/health"
    proc.wait_ready(lambda: http_ok(url), settings.ready_timeout_seconds, f"GET {url}")


def choose_backend(settings: DemoSettings) -> str:
    if settings.embedder != "auto":
        return settings.embedder
    if shutil.which("java") is None:
        logger.warning(
            "Java is not installed, so TorchServe cannot run: the API embeds in process "
            "(RECOMMENDER_EMBEDDER__BACKEND=local). `make system-deps` installs Java 17."
        )
        return "local"
    return "torchserve"


def serve(settings: DemoSettings, procs: list[Proc]) -> None:
    """Set everything up and start the servers into `procs` (the caller stops them)."""
    backend = choose_backend(settings)
    # Before minutes of setup, not after: a taken port is the commonest reason a demo cannot start.
    ports = [(settings.api_port, "DEMO_API_PORT"), (settings.ui_port, "DEMO_UI_PORT")]
    for port, variable in ports + (torchserve_ports(settings) if backend == "torchserve" else []):
        require_free(port, variable)
    model = ensure_model(settings)
    check_stop()
    index_dir = ensure_index(settings, model)
    check_stop()
    runtime = settings.path(settings.data_dir) / "runtime"
    if backend == "torchserve":
        start_torchserve(settings, runtime, procs)
    start_api(settings, runtime, index_dir, backend, procs)
    start_ui(settings, runtime, procs)
    lines = [
        "",
        "fashion-clip is running:",
        f"  UI          http://{LOOPBACK}:{settings.ui_port}",
        f"  API         http://{LOOPBACK}:{settings.api_port}/docs",
    ]
    if backend == "torchserve":
        lines.append(f"  TorchServe  http://{LOOPBACK}:{settings.ts_port}/predictions/{MODEL_NAME}")
    else:
        lines.append("  embedder    in process (no TorchServe)")
    if model.get("untrained"):
        lines.append(f"  model       {model['model_id']} (UNTRAINED: results are not meaningful)")
    else:
        lines.append(f"  model       {model['model_id']}")
    lines += [f"  logs        {runtime / 'logs'}", "Press Ctrl-C to stop.", ""]
    logger.info("\n".join(lines))


def watch(procs: list[Proc]) -> int:
    """Wait for Ctrl-C/SIGTERM, or for a server to die on its own (then stop the rest)."""
    while not STOP.wait(1.0):
        for proc in procs:
            if not proc.alive():
                logger.error(
                    "%s exited with status %s; stopping the others. The end of %s:\n%s",
                    proc.name,
                    proc.popen.returncode,
                    proc.log_path,
                    proc.tail(),
                )
                return 1
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness poll otherwise
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        settings = DemoSettings()
    except ValidationError as exc:
        problems = [f"DEMO_{'__'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        logger.error("Invalid demo settings: %s", "; ".join(problems))
        return 2
    procs: list[Proc] = []
    status = 0
    try:
        serve(settings, procs)
        status = watch(procs)
    except Interrupted:
        status = 0
    except DemoError as exc:
        logger.error("%s", exc)
        status = 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        if procs:
            logger.info("stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
