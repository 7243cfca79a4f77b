"""skaffold.yaml and kind-config.yaml agree with the chart: images, ports, release, values files, keys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
KIND = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
RELEASE = SKAFFOLD["deploy"]["helm"]["releases"][0]


def lookup(values: dict, dotted: str) -> object:
    node = values
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} is not a key of values.yaml"
        node = node[part]
    return node


def profile(name: str) -> dict:
    [found] = [p for p in SKAFFOLD["profiles"] if p["name"] == name]
    return found


def test_skaffold_schema_version_and_release() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    assert SKAFFOLD["kind"] == "Config"
    assert len(SKAFFOLD["deploy"]["helm"]["releases"]) == 1
    assert RELEASE["name"] == "fashion-clip"
    assert (ROOT / RELEASE["chartPath"] / "Chart.yaml").is_file()
    assert RELEASE["chartPath"] == "charts/fashion-clip"
    for values_file in RELEASE["valuesFiles"]:
        assert (ROOT / values_file).is_file()
    assert RELEASE["valuesFiles"] == ["charts/fashion-clip/values-kind.yaml"]


def test_artifacts_are_the_charts_images_built_from_their_dockerfiles(chart_values: dict) -> None:
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    dockerfiles = {
        "modelServer": "model-server/Dockerfile",
        "api": "services/Dockerfile",
        "frontend": "frontend/Dockerfile",
    }
    assert set(artifacts) == {chart_values[c]["image"]["repository"] for c in dockerfiles}
    for component, dockerfile in dockerfiles.items():
        artifact = artifacts[chart_values[component]["image"]["repository"]]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == dockerfile


def test_set_value_templates_wire_each_artifact_into_existing_keys(chart_values: dict) -> None:
    templates = RELEASE["setValueTemplates"]
    for component in ("modelServer", "api", "frontend"):
        image = chart_values[component]["image"]["repository"]
        sanitized = re.sub(r"[/.-]", "_", image)
        assert templates[f"{component}.image.repository"] == f"{{{{.IMAGE_REPO_{sanitized}}}}}"
        assert templates[f"{component}.image.tag"] == f"{{{{.IMAGE_TAG_{sanitized}}}}}"
    for key in [*templates, *RELEASE["setValues"]]:
        lookup(chart_values, key)
    # IMAGE_REPO already carries skaffold's --default-repo: the chart must not prefix another registry.
    assert RELEASE["setValues"] == {"global.imageRegistry": ""}


def test_gke_profile_pushes_and_deploys_by_digest(chart_values: dict) -> None:
    patches = {(p["op"], p["path"]): p.get("value") for p in profile("gke")["patches"]}
    assert patches[("replace", "/build/local/push")] is True
    assert patches[("replace", "/deploy/helm/releases/0/valuesFiles")] == [
        "charts/fashion-clip/values-gke.yaml"
    ]
    for component in ("modelServer", "api", "frontend"):
        key = f"{component}.image.digest"
        lookup(chart_values, key)
        sanitized = re.sub(r"[/.-]", "_", chart_values[component]["image"]["repository"])
        assert patches[("add", f"/deploy/helm/releases/0/setValueTemplates/{key}")] == (
            f"{{{{.IMAGE_DIGEST_{sanitized}}}}}"
        )


def test_kserve_profile_switches_the_runtime(render) -> None:
    [patch] = profile("kserve")["patches"]
    assert patch == {
        "op": "add",
        "path": "/deploy/helm/releases/0/setValues/modelServer.runtime",
        "value": "kserve",
    }
    docs = render(sets=["modelServer.runtime=kserve"])
    assert [d["metadata"]["name"] for d in docs.select("InferenceService")] == ["fashion-clip-model-server"]


def test_kind_profile_pins_the_kind_cluster() -> None:
    kind = profile("kind")
    context = f"kind-{KIND['name']}"
    assert kind["activation"] == [{"kubeContext": context}]
    assert kind["patches"] == [{"op": "add", "path": "/deploy/kubeContext", "value": context}]
    k8s_mk = (ROOT / "mk" / "k8s.mk").read_text()
    assert f"KIND_CLUSTER ?= {KIND['name']}" in k8s_mk


def test_port_forwards_reach_the_rendered_api_and_ui_services(render) -> None:
    docs = render(["values-kind.yaml"])
    forwards = {f["resourceName"]: f for f in SKAFFOLD["portForward"]}
    assert set(forwards) == {"fashion-clip-api", "fashion-clip-frontend"}
    for name, local_port in (("fashion-clip-api", 8000), ("fashion-clip-frontend", 8501)):
        service = docs.one("Service", name)
        forward = forwards[name]
        assert forward["resourceType"] == "service"
        assert forward["namespace"] == RELEASE["namespace"]
        assert forward["port"] == service["spec"]["ports"][0]["port"]
        assert forward["localPort"] == local_port


def test_build_hook_makes_the_model_and_index_first() -> None:
    assert SKAFFOLD["build"]["hooks"]["before"] == [{"command": ["make", "model", "index"]}]
    # Both targets exist: make resolves them without running anything.
    result = subprocess.run(
        ["make", "-n", "model", "index"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_kind_port_mappings_are_the_charts_node_ports(render) -> None:
    docs = render(["values-kind.yaml"])
    node_ports = {}
    for service in docs.select("Service"):
        for port in service["spec"]["ports"]:
            if "nodePort" in port:
                node_ports[service["metadata"]["name"]] = port["nodePort"]
    assert node_ports == {"fashion-clip-api": 30800, "fashion-clip-frontend": 30501}
    [node] = KIND["nodes"]
    mappings = node["extraPortMappings"]
    assert sorted(m["containerPort"] for m in mappings) == sorted(node_ports.values())
    for mapping in mappings:
        assert mapping["hostPort"] == mapping["containerPort"]
        assert mapping["listenAddress"] == "127.0.0.1"
        assert mapping["protocol"] == "TCP"
    assert KIND["apiVersion"] == "kind.x-k8s.io/v1alpha4"


def test_kind_values_use_local_images_never_pulled(render) -> None:
    docs = render(["values-kind.yaml"])
    for component in ("modelServer", "api", "frontend"):
        container = docs.container(component)
        assert container["image"] == f"{docs.name(component)}:dev"
        assert container["imagePullPolicy"] == "Never"


def test_gke_values_use_artifact_registry_and_an_ingress(render) -> None:
    docs = render(["values-gke.yaml"])
    registry = "europe-west1-docker.pkg.dev/my-gcp-project/fashion-clip"
    assert docs.images() == {
        "modelServer": f"{registry}/fashion-clip-model-server:0.1.0",
        "api": f"{registry}/fashion-clip-api:0.1.0",
        "frontend": f"{registry}/fashion-clip-frontend:0.1.0",
    }
    ingress = docs.one("Ingress", "fashion-clip")
    assert ingress["metadata"]["annotations"] == {"kubernetes.io/ingress.class": "gce"}
    [rule] = ingress["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "fashion-clip-frontend",
        "port": {"name": "http"},
    }
    for component in ("modelServer", "api", "frontend"):
        assert docs.pod_spec(component)["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
        [spread] = docs.pod_spec(component)["topologySpreadConstraints"]
        labels = docs.one("Deployment", docs.name(component))["spec"]["template"]["metadata"]["labels"]
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()


def test_image_digest_wins_over_tags(render) -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(set_strings=["global.imageTag=v2", f"api.image.digest={digest}", "frontend.image.tag=v3"])
    assert docs.images() == {
        "modelServer": "fashion-clip-model-server:v2",
        "api": f"fashion-clip-api@{digest}",
        "frontend": "fashion-clip-frontend:v3",
    }
