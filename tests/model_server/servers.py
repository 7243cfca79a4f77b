"""Running the model servers under test: their handles, the test config, their listening sockets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import psutil
from procs import Server

# Batching window of the TorchServe under test: long enough that requests sent together from
# threads land in one batch, short enough that a lone request does not slow the suite much.
TEST_MAX_BATCH_DELAY_MS = 1000


@dataclass
class TorchServe:
    url: str
    management_url: str
    metrics_url: str
    ports: dict[str, int]
    server: Server
    workdir: Path

    def model_log(self) -> str:
        path = self.workdir / "logs" / "model_log.log"
        return path.read_text(errors="replace") if path.exists() else ""


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


def write_test_config(source: Path, target: Path, management_port: int) -> None:
    """The shipped config.properties with only what a test must change: the management port (its
    host stays as shipped, so the test sees the real binding) and a longer batching window."""
    text = source.read_text()
    text, n_mgmt = re.subn(
        r"^(management_address=http://[^:\s]+):\d+$", rf"\g<1>:{management_port}", text, flags=re.M
    )
    text, n_delay = re.subn(r'"maxBatchDelay": \d+', f'"maxBatchDelay": {TEST_MAX_BATCH_DELAY_MS}', text)
    assert (n_mgmt, n_delay) == (1, 1), "config.properties changed shape: update the test's rewrite"
    target.write_text(text)
