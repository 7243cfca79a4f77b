"""The chart exercised, not just rendered: every container of the TorchServe release runs here.

Each rendered container's args, env (its ConfigMap on top of its image's ENV) and ports are taken
from `helm template` and started as a local process. What only the cluster provides is mapped, and
nothing else: container paths (/home/model-server, /srv/index, /tmp, ...) to a tmp copy holding
the tiny model and index; each container port to a free loopback port; Service DNS names to those
ports; 0.0.0.0 to 127.0.0.1. Then each process must become ready on its rendered probe paths, and
the API must answer /recommend through the rendered wiring (API -> TorchServe), as must the helm
test pod's own script.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from charts.dockerfiles import instructions
from procs import LOOPBACK, Server, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "modelServer": ROOT / "model-server" / "Dockerfile",
    "api": ROOT / "services" / "Dockerfile",
    "frontend": ROOT / "frontend" / "Dockerfile",
}
# Rendered with a non-default profile so the derived settings are distinguishable from defaults.
PROFILE = ["modelServer.scaling.cpu=2", "modelServer.scaling.concurrency=2"]
# TorchServe management listens on 127.0.0.1:8081 inside the pod; here it needs a free port too.
LOOPBACK_ONLY_PORTS = {"modelServer": [8081]}


def image_config(dockerfile: Path) -> tuple[dict[str, str], str]:
    """ENV (values without $-expansion) and WORKDIR of a Dockerfile's final stage."""
    env: dict[str, str] = {}
    workdir = "/"
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            env, workdir = {}, "/"
        elif keyword == "WORKDIR":
            workdir = rest.strip()
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                if "$" not in value:  # PATH=/opt/venv/bin:$PATH and the like: the venv is ours here
                    env[key] = value
    return env, workdir


@dataclass
class Sandbox:
    """Where container paths and ports land on this machine."""

    paths: dict[str, Path] = field(default_factory=dict)  # container path prefix -> local path
    ports: dict[int, int] = field(default_factory=dict)  # container port -> loopback port
    services: dict[str, int] = field(default_factory=dict)  # "<service>:<port>" -> loopback port

    def path(self, value: str) -> str:
        for prefix in sorted(self.paths, key=len, reverse=True):
            if value == prefix or value.startswith(prefix + "/"):
                return str(self.paths[prefix]) + value[len(prefix) :]
        return value

    def value(self, key: str, value: str) -> str:
        for service, port in self.services.items():
            value = value.replace(f"//{service}", f"//{LOOPBACK}:{port}")
        value = value.replace("0.0.0.0", LOOPBACK)
        for container_port, port in self.ports.items():
            value = re.sub(rf"(//{re.escape(LOOPBACK)}):{container_port}\b", rf"\g<1>:{port}", value)
        if key.endswith("_PORT") and value.isdigit() and int(value) in self.ports:
            value = str(self.ports[int(value)])
        return self.path(value)


@dataclass
class Running:
    server: Server
    http: str  # base URL of the container's `http` port
    container: dict
    env: dict[str, str]


def probe_paths(container: dict) -> list[str]:
    return [container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("startup", "readiness", "liveness")]


@pytest.fixture(scope="module")
def release(render) -> object:
    return render(sets=PROFILE)


@pytest.fixture(scope="module")
def sandbox(release, tiny_model: Path, tiny_mar: Path, tiny_index: Path, tmp_path_factory) -> Sandbox:
    base = tmp_path_factory.mktemp("exercise")
    box = Sandbox()
    # The model-server image: config, archive and unpacked model under /home/model-server.
    home = base / "model-server-home"
    (home / "model-store").mkdir(parents=True)
    (home / "logs").mkdir()
    shutil.copy(ROOT / "model-server" / "config.properties", home / "config.properties")
    shutil.copy(tiny_mar, home / "model-store" / "clip.mar")
    shutil.copytree(tiny_model, home / "model")
    box.paths["/home/model-server"] = home
    # The API image's index bundle.
    shutil.copytree(tiny_index, base / "srv-index")
    box.paths["/srv/index"] = base / "srv-index"
    # The frontend image's /home/app: the app's code and Streamlit's writable folder.
    app_home = base / "app-home"
    (app_home / ".streamlit").mkdir(parents=True)
    (app_home / "frontend").symlink_to(ROOT / "frontend")
    box.paths["/home/app"] = app_home
    # One /tmp for all: each process gets its own subfolder through TMPDIR below.
    box.paths["/tmp"] = base / "tmp"
    (base / "tmp").mkdir()
    for component in ("modelServer", "api", "frontend"):
        for port in release.container(component)["ports"]:
            box.ports[port["containerPort"]] = free_port()
        for port in LOOPBACK_ONLY_PORTS.get(component, []):
            box.ports[port] = free_port()
    for service in release.select("Service"):
        [port] = service["spec"]["ports"]
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        target = {"model-server": "modelServer", "api": "api", "frontend": "frontend"}[component]
        http = {p["name"]: p["containerPort"] for p in release.container(target)["ports"]}["http"]
        box.services[f"{service['metadata']['name']}:{port['port']}"] = box.ports[http]
    return box


def start(release, sandbox: Sandbox, component: str, venv_bin: Path, extra_env: dict[str, str]) -> Running:
    container = release.container(component)
    assert "command" not in container
    image_env, workdir = image_config(DOCKERFILES[component])
    rendered = {**image_env, **release.env(component)}
    env = {key: sandbox.value(key, value) for key, value in rendered.items()}
    tmp = Path(sandbox.path("/tmp")) / component
    tmp.mkdir(exist_ok=True)
    env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), **extra_env})
    args = [sandbox.path(arg) for arg in container["args"]]
    executable = shutil.which(args[0], path=str(venv_bin))
    assert executable, f"{args[0]} is not installed in {venv_bin}"
    cwd = Path(sandbox.path(workdir))
    http = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    server = Server([executable, *args[1:]], tmp / f"{component}.log", env=env, cwd=cwd)
    return Running(server, f"http://{LOOPBACK}:{sandbox.ports[http]}", container, env)


@contextmanager
def started(
    release, sandbox: Sandbox, component: str, venv_bin: Path, extra_env: dict[str, str], timeout: float
) -> Iterator[Running]:
    """The rendered container as a local process, ready on every path its probes name; stopped after."""
    running = start(release, sandbox, component, venv_bin, extra_env)
    try:
        for path in probe_paths(running.container):
            running.server.wait_http(running.http + path, timeout=timeout)
        yield running
    finally:
        running.server.stop()


@pytest.fixture(scope="module")
def model_server(release, sandbox: Sandbox, venv_bin: Path, java: str) -> Iterator[Running]:
    # Test-only: TorchServe's gRPC listeners (on loopback in the pod, ports 7070/7071) would clash
    # with other TorchServes on this machine; the chart renders nothing for them.
    grpc = {"TS_GRPC_INFERENCE_PORT": str(free_port()), "TS_GRPC_MANAGEMENT_PORT": str(free_port())}
    with started(release, sandbox, "modelServer", venv_bin, grpc, timeout=240) as running:
        management = f"http://{LOOPBACK}:{sandbox.ports[8081]}"

        def workers_loaded() -> bool:
            [model] = httpx.get(f"{management}/models/clip", timeout=5).json()
            return bool(model["workers"]) and all(w["status"] == "READY" for w in model["workers"])

        # TorchServe answers /ping 200 as soon as its frontend runs, before a worker has loaded the
        # model (requests sent meanwhile wait in its queue); the management API shows the workers.
        running.server.wait_until(workers_loaded, timeout=240, what="TorchServe workers READY")
        yield running


@pytest.fixture(scope="module")
def api(release, sandbox: Sandbox, venv_bin: Path, model_server: Running) -> Iterator[Running]:
    with started(release, sandbox, "api", venv_bin, {}, timeout=180) as running:
        yield running


@pytest.fixture(scope="module")
def frontend(release, sandbox: Sandbox, venv_bin: Path, api: Running) -> Iterator[Running]:
    with started(release, sandbox, "frontend", venv_bin, {}, timeout=180) as running:
        yield running


def test_model_server_runs_the_profiles_workers(model_server: Running, sandbox: Sandbox) -> None:
    assert model_server.env["TS_DEFAULT_WORKERS_PER_MODEL"] == "2"
    assert model_server.env["MODEL_SERVER_THREADS"] == "1"
    management = f"http://{LOOPBACK}:{sandbox.ports[8081]}"
    [model] = httpx.get(f"{management}/models/clip", timeout=10).json()
    assert len(model["workers"]) == 2


def test_model_server_is_ready_on_its_probe_paths_with_the_rendered_settings(model_server: Running) -> None:
    for path in probe_paths(model_server.container):
        assert httpx.get(model_server.http + path, timeout=10).status_code == 200
    assert model_server.env["MODEL_SERVER_THREADS"] == "1"  # 2 CPUs over 2 workers
    assert "model_log.log" in {p.name for p in Path(model_server.env["HOME"], "logs").iterdir()}


def test_api_is_ready_and_recommends_through_the_rendered_wiring(api: Running, sandbox: Sandbox) -> None:
    # The rendered URL is the model server's Service, reached here at its mapped port.
    assert api.env["RECOMMENDER_EMBEDDER__BACKEND"] == "torchserve"
    assert api.env["RECOMMENDER_EMBEDDER__URL"] == f"http://{LOOPBACK}:{sandbox.ports[8080]}"
    assert httpx.get(f"{api.http}/readyz", timeout=10).status_code == 200
    template = (ROOT / "charts" / "fashion-clip" / "templates" / "tests" / "test-recommend.yaml").read_text()
    png = base64.b64decode(re.search(r'b64decode\("([A-Za-z0-9+/=]+)"\)', template).group(1))
    answer = httpx.post(
        f"{api.http}/recommend",
        params={"k": 5},
        files={"file": ("red.png", png, "image/png")},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["k"] == 5
    assert len(body["items"]) == 5
    assert body["untrained"] is True  # the tiny model says so all the way through


def test_helm_test_pod_script_passes_against_the_api(release, api: Running) -> None:
    pod = release.one("Pod", "fashion-clip-api-test-recommend")
    [container] = pod["spec"]["containers"]
    command = container["command"]
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={"API_URL": api.http, "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: /readyz 200; /recommend gave 3 items from model ")


def test_frontend_is_ready_on_its_probe_paths(frontend: Running, api: Running) -> None:
    assert frontend.env["FRONTEND_API_URL"] == api.http
    for path in probe_paths(frontend.container):
        response = httpx.get(frontend.http + path, timeout=10)
        assert (response.status_code, response.text) == (200, "ok")


def test_without_headroom_uvicorn_refuses_every_request(
    release, sandbox: Sandbox, venv_bin: Path, api: Running
):
    """Why RECOMMENDER_LIMIT_CONCURRENCY is concurrency + connectionHeadroom: uvicorn counts the
    connection it is judging, so a limit equal to Cloud Run's concurrency 1 answers 503 to all."""
    port = free_port()
    bare = start(
        release,
        sandbox,
        "api",
        venv_bin,
        {"RECOMMENDER_LIMIT_CONCURRENCY": "1", "RECOMMENDER_PORT": str(port)},
    )
    try:
        url = f"http://{LOOPBACK}:{port}/healthz"
        bare.server.wait_http(url, timeout=120, status=503)
        assert httpx.get(url, timeout=10).status_code == 503
    finally:
        bare.server.stop()
    assert httpx.get(f"{api.http}/healthz", timeout=10).status_code == 200  # the rendered limit: 1 + 3
