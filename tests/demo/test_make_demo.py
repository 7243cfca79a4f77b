"""`make demo` from a clean copy of the tree, offline, exactly as a user runs it.

The copy is `git archive HEAD` (a fresh clone without .git); it reuses this venv through
`VENV=... -o $(VENV)/.installed`, so nothing is reinstalled (a dry run proves it first). Servers bind
free loopback ports given through DEMO_*. HF_HUB_OFFLINE=1 keeps the demo off the network, so it
falls back to the tiny model and says so. Two runs: the first installs everything and is stopped
with Ctrl-C (SIGINT to the process group, as a terminal sends it); the second reuses model and index
and is stopped with SIGTERM to make alone, as a supervisor would.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
from procs import LOOPBACK, free_port

pytestmark = pytest.mark.slow

READY_LINE = "Press Ctrl-C to stop."
READY_BOUND_SECONDS = 600  # generous: the whole setup on a shared 2-core machine


@pytest.fixture
def tree(tmp_path: Path, repo_root: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=repo_root, capture_output=True, check=True
    ).stdout
    copy = tmp_path / "fashion-clip"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(copy, filter="data")
    return copy


def make_command(venv: Path) -> list[str]:
    return ["make", "demo", f"VENV={venv}", "-o", f"{venv}/.installed"]


def demo_env() -> tuple[dict[str, str], dict[str, int]]:
    ports = {
        name: free_port()
        for name in ("TS", "TS_MANAGEMENT", "TS_METRICS", "TS_GRPC", "TS_GRPC_MANAGEMENT", "API", "UI")
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "FRONTEND_"))}
    env.update({f"DEMO_{name}_PORT": str(port) for name, port in ports.items()})
    env.update({"HF_HUB_OFFLINE": "1", "DEMO_CATALOG_SIZE": "90", "PYTHONUNBUFFERED": "1"})
    return env, ports


def wait_ready(make: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + READY_BOUND_SECONDS
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if READY_LINE in text:
            return text
        if make.poll() is not None:
            pytest.fail(f"make demo exited with {make.returncode} before it was ready:\n{text[-6000:]}")
        time.sleep(1)
    pytest.fail(f"make demo was not ready within {READY_BOUND_SECONDS} s:\n{log.read_text()[-6000:]}")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def survivors(processes: list[psutil.Process], pgids: set[int]) -> list[str]:
    """Processes from the run (same pid and start time) or in its groups that still exist."""
    left = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getpgid(proc.pid) in pgids and proc.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} (group) {' '.join(proc.info['cmdline'] or [])}")
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return left


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def run_demo(tree: Path, venv: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            make_command(venv),
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_and_check(make: subprocess.Popen, sig: int, whole_group: bool, ports: dict[str, int]) -> None:
    processes = descendants(make.pid)
    pgids = {make.pid}
    for proc in processes:
        try:
            pgids.add(os.getpgid(proc.pid))
        except ProcessLookupError:
            continue
    if whole_group:
        os.killpg(make.pid, sig)
    else:
        os.kill(make.pid, sig)
    try:
        make.wait(timeout=180)
    finally:
        left = survivors(processes, pgids)
        for proc in processes:  # never leave the machine dirty, even when the test fails
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
    assert left == []
    assert all(port_free(port) for port in ports.values())


def test_make_demo_offline_from_a_clean_copy(tree: Path, tmp_path: Path, java: str) -> None:
    venv = Path(sys.executable).parent.parent
    dry = subprocess.run(
        [*make_command(venv), "-n"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install" not in dry and "scripts/demo.py" in dry

    env, ports = demo_env()
    api, ui = f"http://{LOOPBACK}:{ports['API']}", f"http://{LOOPBACK}:{ports['UI']}"
    catalog_images = tree / "data" / "catalog" / "images"

    # 1. First run: model, catalog, index, then TorchServe, API and UI; Ctrl-C.
    first_log = tmp_path / "first.log"
    make = run_demo(tree, venv, env, first_log)
    try:
        output = wait_ready(make, first_log)
        assert "WARNING: Offline" in output
        assert "Installing the TINY UNTRAINED test model instead" in output
        assert f"  UI          {ui}" in output
        assert f"  API         {api}/docs" in output
        assert f"  TorchServe  http://{LOOPBACK}:{ports['TS']}/predictions/clip" in output

        query = sorted(catalog_images.glob("*.jpg"))[0]
        with httpx.Client(base_url=api, timeout=60) as client:
            answer = client.post(
                "/recommend", params={"k": 5}, files={"file": (query.name, query.read_bytes())}
            )
            assert answer.status_code == 200
            assert len(answer.json()["items"]) == 5
            assert answer.json()["items"][0]["id"] == query.stem  # the photo finds itself first
            info = client.get("/info").json()
            assert (info["untrained"], info["embedder"]["backend"]) == (True, "torchserve")
            assert info["model"]["model_id"].startswith("tiny-clip@")
        assert httpx.get(f"{ui}/_stcore/health", timeout=10).status_code == 200
        assert (
            httpx.post(
                f"http://{LOOPBACK}:{ports['TS']}/predictions/clip", json={"text": "red dress"}, timeout=60
            ).json()["dim"]
            == 64
        )
    finally:
        stop_and_check(make, signal.SIGINT, whole_group=True, ports=ports)
    assert "SIGINT received: stopping..." in first_log.read_text()
    assert "[demo] stopped." in first_log.read_text()
    assert not (tree / "key_file.json").exists() and not (tree / "logs").exists()
    assert (tree / "data" / "runtime" / "torchserve" / "logs").is_dir()

    # 2. Second run: model and index are reused; SIGTERM to make alone.
    index_built = (tree / "data" / "index" / "manifest.json").stat().st_mtime_ns
    second_log = tmp_path / "second.log"
    make = run_demo(tree, venv, env, second_log)
    try:
        output = wait_ready(make, second_log)
        assert "model: keeping the one in" in output
        assert "is built for tiny-clip@" in output and "keeping it" in output
        assert "Installing the TINY" not in output
        assert httpx.get(f"{api}/readyz", timeout=10).status_code == 200
    finally:
        stop_and_check(make, signal.SIGTERM, whole_group=False, ports=ports)
    assert (tree / "data" / "index" / "manifest.json").stat().st_mtime_ns == index_built
    assert "SIGTERM received: stopping..." in second_log.read_text()
    shutil.rmtree(tree / "data", ignore_errors=True)
