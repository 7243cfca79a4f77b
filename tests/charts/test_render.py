"""The chart lints, renders for every profile, and every object it renders is a valid object.

Built-in kinds go through kubernetes-validate's strict schemas for the pinned Kubernetes version.
The one custom kind, KServe's InferenceService, is checked field by field against the KServe and
Kubernetes client models (unknown fields and wrong types fail); any other kind fails the test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest

# What each profile renders, exactly: a kind appearing or vanishing is a change worth seeing.
EXPECTED_KINDS = {
    "defaults": {
        ("ConfigMap", 3),
        ("Deployment", 3),
        ("HorizontalPodAutoscaler", 3),
        ("NetworkPolicy", 3),
        ("Pod", 1),
        ("PodDisruptionBudget", 3),
        ("Service", 3),
        ("ServiceAccount", 3),
    },
}
EXPECTED_KINDS["kind"] = EXPECTED_KINDS["defaults"]
EXPECTED_KINDS["gke"] = EXPECTED_KINDS["defaults"] | {("Ingress", 1)}
EXPECTED_KINDS["kserve"] = {
    ("ConfigMap", 3),
    ("Deployment", 2),
    ("HorizontalPodAutoscaler", 2),
    ("InferenceService", 1),
    ("NetworkPolicy", 3),
    ("Pod", 1),
    ("PodDisruptionBudget", 2),
    ("Service", 2),
    ("ServiceAccount", 3),
}
CUSTOM_KINDS = {("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService"}


def test_lint_strict(helm: Path, chart_dir: Path, profile_args: tuple) -> None:
    files, sets = profile_args
    command = [str(helm), "lint", "--strict", str(chart_dir)]
    command += [arg for f in files for arg in ("-f", str(chart_dir / f))]
    command += [arg for s in sets for arg in ("--set", s)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_renders_exactly_the_expected_kinds(render_profile, profile: str) -> None:
    docs = render_profile(profile)
    counts = {}
    for doc in docs:
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
    assert set(counts.items()) == EXPECTED_KINDS[profile]


def test_every_builtin_object_is_valid_for_the_pinned_kubernetes(
    render_profile, profile: str, kube_version: str
) -> None:
    validated = 0
    for doc in render_profile(profile):
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue  # test_custom_kinds_match_their_published_models
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{doc['apiVersion']} {doc['kind']} is neither built in nor handled as a custom kind")
        validated += 1
    assert validated == sum(n for kind, n in EXPECTED_KINDS[profile] if kind != "InferenceService")


def _model_class(name: str) -> type:
    for module in (kserve_models, k8s_models):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no client model named {name}")


def model_errors(data: object, type_name: str, path: str = "") -> list[str]:
    """Structural errors of `data` read as the OpenAPI client type `type_name` (strict: no unknown keys)."""
    # kserve's models spell containers list[...]/dict(...); the Kubernetes client's List[...]/Dict[...].
    if type_name.startswith(("list[", "List[")):
        if not isinstance(data, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(data) for e in model_errors(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith(("dict(", "Dict[")):
        if not isinstance(data, dict):
            return [f"{path}: expected a map"]
        value_type = type_name[type_name.index(",") + 1 : -1].strip()
        return [e for k, v in data.items() for e in model_errors(v, value_type, f"{path}.{k}")]
    primitives = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}
    if type_name in primitives:
        ok = isinstance(data, primitives[type_name]) and not (type_name == "int" and isinstance(data, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {data!r}"]
    if type_name in ("object", "ResourceQuantity"):
        return []  # int-or-string and quantities
    cls = _model_class(type_name)
    if not isinstance(data, dict):
        return [f"{path}: expected a {type_name} object"]
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in by_json_key:
            errors.append(f"{path}.{key}: not a field of {type_name}")
            continue
        errors += model_errors(value, cls.openapi_types[by_json_key[key]], f"{path}.{key}")
    return errors


def test_model_errors_catches_unknown_fields_and_wrong_types() -> None:
    good = {"containers": [{"name": "kserve-container", "image": "x", "ports": [{"containerPort": 8080}]}]}
    assert model_errors(good, "V1beta1PredictorSpec") == []
    typo = {"minReplica": 1, "containers": [{"name": "c", "imagePulPolicy": "Never"}]}
    assert model_errors(typo, "V1beta1PredictorSpec") == [
        ".minReplica: not a field of V1beta1PredictorSpec",
        ".containers[0].imagePulPolicy: not a field of V1Container",
    ]
    assert model_errors({"minReplicas": "1"}, "V1beta1PredictorSpec") == [
        ".minReplicas: expected int, got '1'"
    ]


def test_custom_kinds_match_their_published_models(render_profile) -> None:
    docs = render_profile("kserve")
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS]
    assert [d["kind"] for d in custom] == ["InferenceService"]
    for doc in custom:
        assert model_errors(doc, CUSTOM_KINDS[(doc["apiVersion"], doc["kind"])]) == []


def test_notes_tell_how_to_reach_the_release_and_warn_about_scale_to_zero(
    helm: Path, chart_dir: Path
) -> None:
    command = [str(helm), "install", "fashion-clip", str(chart_dir), "--dry-run=client", "-n", "fashion-clip"]
    command += ["-f", str(chart_dir / "values-kind.yaml"), "--set", "api.scaling.minInstances=0"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "UI:  http://localhost:30501/" in notes
    assert "API: http://localhost:30800/docs" in notes
    assert "helm test fashion-clip --namespace fashion-clip" in notes
    assert "NOTE: api.scaling.minInstances is 0, but a HorizontalPodAutoscaler cannot scale to zero" in notes
    assert "modelServer.scaling.minInstances" not in notes
