"""What runs in each pod: the images' own commands, named ports and probes on them, the restricted
Pod Security Standard, writable emptyDirs at the contract's paths, and no Service on TorchServe's
management port."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from charts.dockerfiles import instructions
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "modelServer": ROOT / "model-server" / "Dockerfile",
    "api": ROOT / "services" / "Dockerfile",
    "frontend": ROOT / "frontend" / "Dockerfile",
}
HTTP_PORTS = {"modelServer": 8080, "api": 8000, "frontend": 8501}
WRITABLE = {
    "modelServer": {"/home/model-server/logs", "/tmp"},
    "api": {"/tmp"},
    "frontend": {"/tmp", "/home/app/.streamlit"},
}
# (startup, readiness, liveness) paths.
PROBE_PATHS = {
    "torchserve": ("/ping", "/ping", "/ping"),
    "kserve": ("/v2/health/ready", "/v2/health/ready", "/v2/health/live"),
    "api": ("/healthz", "/readyz", "/healthz"),
    "frontend": ("/_stcore/health", "/_stcore/health", "/_stcore/health"),
}


def final_stage_instructions(dockerfile: Path) -> dict[str, str]:
    """The last CMD / ENTRYPOINT / EXPOSE of the Dockerfile's final stage, continuation lines joined."""
    found: dict[str, str] = {}
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            found = {}
        elif keyword in ("CMD", "ENTRYPOINT", "EXPOSE"):
            found[keyword] = rest.strip()
    return found


def test_containers_run_the_images_cmd_behind_their_entrypoint(render, component: str) -> None:
    """args = the Dockerfile's CMD (exec form), and no `command`, so an ENTRYPOINT such as tini stays."""
    container = render().container(component)
    cmd = final_stage_instructions(DOCKERFILES[component]).get("CMD")
    assert cmd is not None, f"{DOCKERFILES[component]} has no CMD"
    assert container["args"] == json.loads(cmd)
    assert "command" not in container


def test_container_ports_are_the_images_exposed_ports(render, component: str) -> None:
    container = render().container(component)
    exposed = final_stage_instructions(DOCKERFILES[component]).get("EXPOSE", "")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == HTTP_PORTS[component]
    assert {str(port) for port in ports.values()} <= set(exposed.split())


def test_probes_use_the_named_http_port_and_the_contract_paths(render_profile, profile: str, component: str):
    docs = render_profile(profile)
    container = docs.container(component)
    kserve = component == "modelServer" and profile == "kserve"
    key = ("kserve" if kserve else "torchserve") if component == "modelServer" else component
    paths = tuple(
        container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("startup", "readiness", "liveness")
    )
    assert paths == PROBE_PATHS[key]
    for kind in ("startup", "readiness", "liveness"):
        http_get = container[f"{kind}Probe"]["httpGet"]
        # Knative probes the serving port itself and refuses any other.
        assert http_get.get("port") == (None if kserve else "http")
    if not kserve:
        assert {"name": "http", "containerPort": HTTP_PORTS[component], "protocol": "TCP"} in container[
            "ports"
        ]


def test_startup_probes_give_the_model_time_to_load(render) -> None:
    startup = render().container("modelServer")["startupProbe"]
    # 240 s, the most Cloud Run allows; the same probe settings feed the Cloud Run services.
    assert startup["periodSeconds"] * startup["failureThreshold"] == 240


def restricted(container: dict) -> None:
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pods_meet_the_restricted_pod_security_standard(render_profile, profile: str, component: str) -> None:
    docs = render_profile(profile)
    spec = docs.pod_spec(component)
    restricted(docs.container(component))
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    if not (component == "modelServer" and docs.is_kserve()):
        # Knative admits no pod-level securityContext by default; the container carries it all.
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    sa = docs.one("ServiceAccount", spec["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False


def test_writable_paths_are_emptydirs(render_profile, profile: str, component: str) -> None:
    docs = render_profile(profile)
    spec = docs.pod_spec(component)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in docs.container(component)["volumeMounts"]}
    assert set(mounts) == WRITABLE[component]
    for name in mounts.values():
        assert set(volumes[name]) == {"name", "emptyDir"}


def test_no_service_or_container_exposes_torchserve_management(render_profile, profile: str) -> None:
    docs = render_profile(profile)
    for service in docs.select("Service"):
        for port in service["spec"]["ports"]:
            assert 8081 not in (port["port"], port.get("targetPort"), port.get("nodePort"))
            assert port["targetPort"] == "http"
    for component in ("modelServer", "api", "frontend"):
        assert 8081 not in {p["containerPort"] for p in docs.container(component)["ports"]}
    if not docs.is_kserve():
        assert docs.env("modelServer")["TS_MANAGEMENT_ADDRESS"] == "http://127.0.0.1:8081"


def test_services_select_exactly_their_components_pods(render_profile, profile: str) -> None:
    docs = render_profile(profile)
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in docs.select("Deployment")]
    pods += [d["metadata"]["labels"] for d in docs.select("Pod")]  # the helm test pod
    for service in docs.select("Service"):
        selector = service["spec"]["selector"]
        matched = [labels for labels in pods if selector.items() <= labels.items()]
        assert len(matched) == 1
        assert matched[0]["app.kubernetes.io/component"] == service["metadata"]["name"].removeprefix(
            "fashion-clip-"
        )


def test_pdbs_and_hpas_target_their_deployment(render_profile, profile: str) -> None:
    docs = render_profile(profile)
    for pdb in docs.select("PodDisruptionBudget"):
        deployment = docs.one("Deployment", pdb["metadata"]["name"])
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert pdb["spec"]["maxUnavailable"] == 1


def test_helm_test_pod_calls_readyz_and_recommend_with_an_embedded_png(render) -> None:
    docs = render()
    pod = docs.one("Pod", "fashion-clip-api-test-recommend")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    restricted(container)
    assert container["image"] == docs.container("api")["image"]
    assert container["env"] == [{"name": "API_URL", "value": "http://fashion-clip-api:8000"}]
    assert container["command"][:2] == ["python", "-c"]
    script = container["command"][2]
    assert "{api}/readyz" in script and "{api}/recommend" in script
    png = base64.b64decode(re.search(r'b64decode\("([A-Za-z0-9+/=]+)"\)', script).group(1))
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (8, 8))


def test_admin_token_comes_from_a_secret_never_the_configmap(render, kube_version: str) -> None:
    import kubernetes_validate

    assert "env" not in render().container("api")  # no token: the admin routes answer 403
    generated = render(sets=["api.adminToken.generate=true"])
    secret = generated.one("Secret", "fashion-clip-api-admin-token")
    kubernetes_validate.validate(secret, kube_version, strict=True)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", token)
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    reference = {"secretKeyRef": {"name": "fashion-clip-api-admin-token", "key": "token"}}
    assert generated.container("api")["env"] == [{"name": "RECOMMENDER_ADMIN_TOKEN", "valueFrom": reference}]
    assert "RECOMMENDER_ADMIN_TOKEN" not in generated.env("api")
    existing = render(set_strings=["api.adminToken.existingSecret=ops-token"])
    assert existing.select("Secret") == []
    [variable] = existing.container("api")["env"]
    assert variable["valueFrom"] == {"secretKeyRef": {"name": "ops-token", "key": "token"}}


def test_admin_token_sources_are_exclusive(render_error) -> None:
    stderr = render_error(
        sets=["api.adminToken.generate=true"], set_strings=["api.adminToken.existingSecret=x"]
    )
    assert "api.adminToken: set existingSecret or generate, not both" in stderr
