"""Starting real servers on loopback for tests: free ports, readiness waits, clean stops.

Every server a test starts listens on 127.0.0.1 and every request goes there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Server:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{what}: process exited with {self.proc.returncode}\n{self.log()[-4000:]}"
                )
            try:
                if check():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{what}: not ready after {timeout}s\n{self.log()[-4000:]}")

    def wait_http(self, url: str, timeout: float = 120.0, status: int = 200) -> None:
        self.wait_until(lambda: httpx.get(url, timeout=2.0).status_code == status, timeout, f"GET {url}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_api_env(index_dir: Path, model_dir: Path | None = None, **overrides: str) -> dict[str, str]:
    """Settings of an API on loopback over `index_dir` with the model in process at fp32 (as the test
    indexes are built, so vectors compare exactly); `overrides` are more RECOMMENDER_* variables."""
    env = {
        "RECOMMENDER_HOST": LOOPBACK,
        "RECOMMENDER_INDEX_DIR": str(index_dir),
        "RECOMMENDER_EMBEDDER__BACKEND": "local",
        "RECOMMENDER_EMBEDDER__PRECISION": "fp32",
    }
    if model_dir is not None:
        env["RECOMMENDER_EMBEDDER__MODEL_DIR"] = str(model_dir)
    env.update(overrides)
    return env


def start_api(
    env: dict[str, str], log_path: Path, ready: bool = True, timeout: float = 180.0
) -> tuple[Server, str]:
    """The real API (`python -m recommender` under uvicorn) on a free loopback port; waits for
    /readyz 200, or only /healthz when `ready` is False."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    server = Server(
        [sys.executable, "-m", "recommender"],
        log_path,
        env={**env, "RECOMMENDER_PORT": str(port)},
        cwd=Path(log_path).parent,
    )
    try:
        server.wait_http(f"{url}/readyz" if ready else f"{url}/healthz", timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server, url
