"""A real cluster with the chart installed: `make e2e` (pytest -m e2e) against the current kube context.

The e2e tests never run in a plain `pytest` / `make test`: they are skipped unless the marker
expression selects `e2e`, and skipped when no cluster answers. The release and its namespace come
from E2E_RELEASE / E2E_NAMESPACE (default fashion-clip / fashion-clip, as `make deploy-gke` and
`make dev` install it).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from procs import LOOPBACK

E2E_HINT = "needs a Kubernetes cluster with the chart installed: run `make e2e`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "e2e" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=E2E_HINT)
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(skip)


@dataclass(frozen=True)
class Cluster:
    core: object
    apps: object
    autoscaling: object
    policy: object
    custom: object
    namespace: str
    release: str

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.release}"


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config()
    except (ConfigException, FileNotFoundError) as exc:
        pytest.skip(f"no kubeconfig ({exc}): {E2E_HINT}")
    try:
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as exc:  # any transport or auth failure means: no cluster to test
        pytest.skip(f"the current kube context does not answer ({exc.__class__.__name__}): {E2E_HINT}")
    return Cluster(
        core=client.CoreV1Api(),
        apps=client.AppsV1Api(),
        autoscaling=client.AutoscalingV2Api(),
        policy=client.PolicyV1Api(),
        custom=client.CustomObjectsApi(),
        namespace=os.environ.get("E2E_NAMESPACE", "fashion-clip"),
        release=os.environ.get("E2E_RELEASE", "fashion-clip"),
    )


def _pipe(source, sink) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="session")
def api_url(cluster: Cluster) -> Iterator[str]:
    """http://127.0.0.1:<port> forwarded to a ready API pod's port 8000 through the Kubernetes API."""
    from kubernetes.stream import portforward

    pods = cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=f"{cluster.selector},app.kubernetes.io/component=api"
    ).items
    ready = [
        p.metadata.name
        for p in pods
        if p.status.phase == "Running" and all(c.ready for c in (p.status.container_statuses or []))
    ]
    assert ready, f"no ready API pod in namespace {cluster.namespace}"
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                local, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            forward = portforward(
                cluster.core.connect_get_namespaced_pod_portforward, ready[0], cluster.namespace, ports="8000"
            )
            remote = forward.socket(8000)
            remote.setblocking(True)
            threading.Thread(target=_pipe, args=(local, remote), daemon=True).start()
            threading.Thread(target=_pipe, args=(remote, local), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(timeout=5)
