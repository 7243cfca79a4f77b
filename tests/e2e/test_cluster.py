"""The installed chart on a real cluster: rollouts, HPAs, PDBs, the API through a port-forward, helm test."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT_TIMEOUT = 900.0
# 8x8 red PNG, the one the chart's helm test sends.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8IafBgA0wMeAAg1MCANh8AR6FrdlEAAAAAElFTkSuQmCC"
)


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(5)
    raise AssertionError(f"{what}: not reached in {timeout:.0f}s (last: {last!r})")


def kserve_runtime(cluster) -> bool:
    try:
        found = cluster.custom.list_namespaced_custom_object(
            "serving.kserve.io",
            "v1beta1",
            cluster.namespace,
            "inferenceservices",
            label_selector=cluster.selector,
        )
    except Exception:  # the CRD is not installed: a TorchServe release
        return False
    return bool(found["items"])


def expected_deployments(cluster) -> set[str]:
    names = {f"{cluster.release}-api", f"{cluster.release}-frontend"}
    if not kserve_runtime(cluster):
        names.add(f"{cluster.release}-model-server")
    return names


def test_every_deployment_rolls_out(cluster) -> None:
    def rolled_out():
        deployments = cluster.apps.list_namespaced_deployment(
            cluster.namespace, label_selector=cluster.selector
        ).items
        done = {
            d.metadata.name
            for d in deployments
            if (d.status.observed_generation or 0) >= d.metadata.generation
            and d.status.updated_replicas == d.spec.replicas
            and d.status.ready_replicas == d.spec.replicas
            and d.status.available_replicas == d.spec.replicas
        }
        return done if done == expected_deployments(cluster) else None

    assert wait_for(rolled_out, ROLLOUT_TIMEOUT, "rollout") == expected_deployments(cluster)


def test_kserve_inference_service_is_ready_when_used(cluster) -> None:
    if not kserve_runtime(cluster):
        pytest.skip("the release runs TorchServe")

    def ready():
        isvc = cluster.custom.get_namespaced_custom_object(
            "serving.kserve.io",
            "v1beta1",
            cluster.namespace,
            "inferenceservices",
            f"{cluster.release}-model-server",
        )
        conditions = {c["type"]: c["status"] for c in isvc.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True"

    wait_for(ready, ROLLOUT_TIMEOUT, "InferenceService Ready")


def test_hpas_scale_their_deployment_on_measured_cpu(cluster) -> None:
    hpas = {
        h.metadata.name: h
        for h in cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler(
            cluster.namespace, label_selector=cluster.selector
        ).items
    }
    assert set(hpas) == expected_deployments(cluster)
    for name, hpa in hpas.items():
        assert hpa.spec.scale_target_ref.name == name
        assert 1 <= hpa.spec.min_replicas <= hpa.spec.max_replicas

    def measured():
        current = cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler(
            cluster.namespace, label_selector=cluster.selector
        ).items
        # metrics-server feeds the HPA: every HPA reports a CPU utilisation.
        return (
            all(
                any(m.resource and m.resource.name == "cpu" for m in (h.status.current_metrics or []))
                for h in current
            )
            and current
        )

    for hpa in wait_for(measured, 300, "HPA CPU metrics (is metrics-server installed?)"):
        assert hpa.spec.min_replicas <= hpa.status.current_replicas <= hpa.spec.max_replicas


def test_pdbs_allow_one_disruption_when_healthy(cluster) -> None:
    pdbs = cluster.policy.list_namespaced_pod_disruption_budget(
        cluster.namespace, label_selector=cluster.selector
    ).items
    assert {p.metadata.name for p in pdbs} == expected_deployments(cluster)

    def healthy():
        current = cluster.policy.list_namespaced_pod_disruption_budget(
            cluster.namespace, label_selector=cluster.selector
        ).items
        return all(p.status.current_healthy == p.status.expected_pods >= 1 for p in current) and current

    for pdb in wait_for(healthy, ROLLOUT_TIMEOUT, "PDBs healthy"):
        assert pdb.spec.max_unavailable == 1
        assert pdb.status.disruptions_allowed == 1


def test_api_answers_through_a_port_forward(cluster, api_url: str) -> None:
    assert httpx.get(f"{api_url}/healthz", timeout=10).status_code == 200
    ready = httpx.get(f"{api_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    answer = httpx.post(
        f"{api_url}/recommend", params={"k": 3}, files={"file": ("red.png", PNG, "image/png")}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["k"] == 3
    assert 1 <= len(body["items"]) <= 3
    for item in body["items"]:
        assert -1.0 <= item["score"] <= 1.0
        assert item["image_url"] == f"/items/{item['id']}/image"
    # Not an image: the one error shape, through the whole chain.
    refused = httpx.post(
        f"{api_url}/recommend", files={"file": ("x.png", b"not a png", "image/png")}, timeout=30
    )
    assert refused.status_code in (400, 415)
    assert set(refused.json()) == {"error", "message"}


def test_helm_test_passes(cluster) -> None:
    spec = importlib.util.spec_from_file_location("scripts_helm", ROOT / "scripts" / "helm.py")
    helm_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helm_module)
    helm = helm_module.provide("helm")
    result = subprocess.run(
        [str(helm), "test", cluster.release, "--namespace", cluster.namespace, "--logs", "--timeout", "5m"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: /readyz 200; /recommend gave" in result.stdout
