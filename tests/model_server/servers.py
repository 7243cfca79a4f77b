"""Running the model servers under test: their handles, the test config, their listening sockets."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from procs import LOOPBACK, Server, free_port

# Batching window of the TorchServe under test: long enough that requests sent together from
# threads land in one batch, short enough that a lone request does not slow the suite much.
TEST_MAX_BATCH_DELAY_MS = 1000


@dataclass
class KServe:
    url: str
    port: int
    server: Server


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket the process listens on; IPv4-mapped IPv6 shown as IPv4."""
    process = psutil.Process(pid)
    connections = getattr(process, "net_connections", process.connections)(kind="inet")
    found = []
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN:
            continue
        ip = ipaddress.ip_address(conn.laddr.ip.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        found.append((str(ip), conn.laddr.port))
    return sorted(found)


def java_pid(launcher_pid: int) -> int:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if child.name() == "java":
            return child.pid
    raise AssertionError("the torchserve launcher has no java child")


def write_test_config(
    source: Path, target: Path, management_port: int, batch_delay_ms: int = TEST_MAX_BATCH_DELAY_MS
) -> None:
    """The shipped config.properties with only what a test must change: the management port (its
    host stays as shipped, so the test sees the real binding) and a longer batching window."""
    text = source.read_text()
    text, n_mgmt = re.subn(
        r"^(management_address=http://[^:\s]+):\d+$", rf"\g<1>:{management_port}", text, flags=re.M
    )
    text, n_delay = re.subn(r'"maxBatchDelay": \d+', f'"maxBatchDelay": {batch_delay_ms}', text)
    assert (n_mgmt, n_delay) == (1, 1), "config.properties changed shape: update the test's rewrite"
    target.write_text(text)


class TorchServe:
    """The real TorchServe with the tiny .mar and the shipped config.properties (as the image starts
    it), every listener on loopback; stoppable, restartable on the same ports, and pausable (SIGSTOP)
    to play a hung server."""

    def __init__(
        self,
        workdir: Path,
        tiny_mar: Path,
        venv_bin: Path,
        repo_root: Path,
        batch_delay_ms: int = TEST_MAX_BATCH_DELAY_MS,
    ) -> None:
        self.workdir = workdir
        self.ports = {
            name: free_port() for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")
        }
        self.url = f"http://{LOOPBACK}:{self.ports['inference']}"
        self.management_url = f"http://{LOOPBACK}:{self.ports['management']}"
        self.metrics_url = f"http://{LOOPBACK}:{self.ports['metrics']}"
        write_test_config(
            repo_root / "model-server" / "config.properties",
            workdir / "config.properties",
            self.ports["management"],
            batch_delay_ms,
        )
        tmp = workdir / "tmp"  # pid file, worker sockets, extracted archive: private to this server
        tmp.mkdir(exist_ok=True)
        self.env = {
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "MODEL_SERVER_PRECISION": "fp32",
            "MODEL_SERVER_THREADS": "1",
            # enable_envvars_config=true in the shipped config: TS_* overrides it.
            "TS_INFERENCE_ADDRESS": self.url,
            "TS_METRICS_ADDRESS": self.metrics_url,
            "TS_GRPC_INFERENCE_PORT": str(self.ports["grpc_i"]),
            "TS_GRPC_MANAGEMENT_PORT": str(self.ports["grpc_m"]),
        }
        self.command = [
            str(venv_bin / "torchserve"),
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--ts-config",
            str(workdir / "config.properties"),
            "--model-store",
            str(tiny_mar.parent),
        ]
        self.server: Server | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.server = Server(
            self.command, self.workdir / f"torchserve-{self.starts}.out", env=self.env, cwd=self.workdir
        )
        # /ping answers once the frontend runs; a prediction only once the worker has the model.
        self.server.wait_until(
            lambda: (
                httpx.post(f"{self.url}/predictions/clip", json={"text": "ping"}, timeout=5).status_code
                == 200
            ),
            timeout=180,
            what="TorchServe serving clip",
        )

    def stop(self) -> None:
        """Stop the whole process group and wait for the Java frontend itself to be gone: the
        launcher refuses to start while the pid in its pid file still runs."""
        if self.server is None:
            return
        pid_file = Path(self.env["TMPDIR"]) / ".model_server.pid"
        frontend_pid = int(pid_file.read_text().strip()) if pid_file.is_file() else None
        self.server.stop()
        self.server = None
        if frontend_pid is not None:
            try:
                psutil.Process(frontend_pid).wait(timeout=60)
            except psutil.NoSuchProcess:
                pass

    def model_log(self) -> str:
        path = self.workdir / "logs" / "model_log.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pause(self) -> None:
        os.killpg(self.server.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.server.proc.pid, signal.SIGCONT)
