"""Pieces of scripts/demo.py that need no model: settings, ports, stopping whole process groups."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil
import pytest
from procs import LOOPBACK, free_port


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def test_stop_kills_a_group_that_ignores_sigterm(demo: ModuleType, tmp_path: Path) -> None:
    # A leader and two grandchildren that all ignore SIGTERM (ignored signals are inherited), like a
    # server whose workers hang: stop() must still leave nothing behind.
    script = "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"
    proc = demo.Proc("stubborn", ["bash", "-c", script], tmp_path / "stubborn.log", {}, tmp_path)
    pgid = proc.popen.pid
    deadline = time.monotonic() + 60
    while "started" not in (tmp_path / "stubborn.log").read_text():
        assert time.monotonic() < deadline, "the stub never started"
        time.sleep(0.05)
    assert len(group_members(pgid)) == 3
    proc.stop(timeout=1.0)
    assert proc.popen.returncode == -9
    assert group_members(pgid) == []


def test_taken_port_names_the_variable(demo: ModuleType) -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(demo.DemoError) as caught:
            demo.require_free(port, "DEMO_API_PORT")
    assert str(caught.value).startswith(f"Port {port} on {LOOPBACK} is taken (")
    assert str(caught.value).endswith("stop what uses it or set DEMO_API_PORT.")


@pytest.mark.parametrize(
    ("env", "allowed"),
    [({"DEMO_OFFLINE": "1"}, False), ({"HF_HUB_OFFLINE": "1"}, False), ({"HF_HUB_OFFLINE": "true"}, False)],
)
def test_offline_switches_skip_the_download(
    demo: ModuleType, monkeypatch: pytest.MonkeyPatch, env: dict, allowed: bool
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert demo.network_allowed(demo.DemoSettings()) is allowed


def test_invalid_settings_exit_2_naming_the_variable(demo_script: Path) -> None:
    env = {**os.environ, "DEMO_API_PORT": "http", "DEMO_EMBEDDER": "gpu"}
    done = subprocess.run([sys.executable, demo_script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout.strip() == (
        "[demo] Invalid demo settings: DEMO_API_PORT: Input should be a valid integer, unable to parse "
        "string as an integer; DEMO_EMBEDDER: Input should be 'auto', 'torchserve' or 'local'"
    )


def test_the_hub_probe_decides_whether_to_download(demo: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DEMO_OFFLINE", raising=False)
    with socket.socket() as hub:
        hub.bind((LOOPBACK, 0))
        hub.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://{LOOPBACK}:{hub.getsockname()[1]}")
        assert demo.network_allowed(demo.DemoSettings()) is True
    # Closed now: nothing listens there any more.
    assert demo.network_allowed(demo.DemoSettings()) is False


def test_a_taken_port_stops_the_demo_before_any_setup(demo_script: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = {
            **os.environ,
            "DEMO_UI_PORT": str(port),
            "DEMO_API_PORT": str(free_port()),
            "DEMO_EMBEDDER": "local",
            "DEMO_DATA_DIR": str(tmp_path / "data"),
            "DEMO_MODEL_DIR": str(tmp_path / "model"),
            "DEMO_MODEL_STORE": str(tmp_path / "store"),
        }
        done = subprocess.run(
            [sys.executable, demo_script], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1
    assert f"[demo] Port {port} on {LOOPBACK} is taken (" in done.stdout
    assert done.stdout.rstrip().endswith("stop what uses it or set DEMO_UI_PORT.")
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no model, catalog or index started


def test_without_java_the_api_embeds_in_process(
    demo: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no java on it
    monkeypatch.delenv("DEMO_EMBEDDER", raising=False)
    assert demo.choose_backend(demo.DemoSettings()) == "local"
    assert "Java is not installed, so TorchServe cannot run" in caplog.text
    monkeypatch.setenv("DEMO_EMBEDDER", "torchserve")  # an explicit choice is kept
    assert demo.choose_backend(demo.DemoSettings()) == "torchserve"
