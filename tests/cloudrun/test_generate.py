"""scripts/cloudrun.py: Cloud Run services from the chart's values, identical in what they share with
what Helm renders from the same files, and refusing bad values by key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "cloudrun"
FILES = ["fashion-clip-model-server.yaml", "fashion-clip-api.yaml", "fashion-clip-frontend.yaml"]
COMPONENT_OF = dict(zip(FILES, ["modelServer", "api", "frontend"], strict=True))
REGISTRY = "europe-west1-docker.pkg.dev/my-gcp-project/fashion-clip"
# Keys whose values differ by platform on purpose: the callee's address, and Cloud Run's ID token.
WIRING = {"RECOMMENDER_EMBEDDER__URL", "RECOMMENDER_EMBEDDER__ID_TOKEN", "FRONTEND_API_URL"}


def generate(cloudrun, values_files: list[Path], sets: list[str] = (), set_strings: list[str] = ()) -> dict:
    values = cloudrun.load_values(list(values_files), list(sets), list(set_strings))
    return {name: service for name, service in cloudrun.build_services(values).items()}


def container(service: dict) -> dict:
    [only] = service["spec"]["template"]["spec"]["containers"]
    return only


def env(service: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(service)["env"] if "value" in e}


def test_committed_services_are_what_make_cloudrun_writes(cloudrun, gke_values: Path, tmp_path: Path) -> None:
    assert cloudrun.main(["-f", str(gke_values), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert sorted(p.name for p in COMMITTED.iterdir()) == sorted(FILES), "run `make cloudrun`"
    for name in FILES:
        assert (COMMITTED / name).read_text() == (tmp_path / name).read_text(), (
            f"{name} is stale: run `make cloudrun`"
        )


def test_generating_twice_gives_identical_files(cloudrun, gke_values: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert cloudrun.main(["-f", str(gke_values), "--out", str(first)]) == 0
    assert cloudrun.main(["-f", str(gke_values), "--out", str(second)]) == 0
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_model_server_service_is_exactly_this(cloudrun, gke_values: Path) -> None:
    service = yaml.safe_load((COMMITTED / "fashion-clip-model-server.yaml").read_text())
    assert service == {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "fashion-clip-model-server",
            "labels": {
                "app": "fashion-clip",
                "component": "model-server",
                "cloud.googleapis.com/location": "europe-west1",
            },
            "annotations": {"run.googleapis.com/ingress": "internal"},
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"app": "fashion-clip", "component": "model-server"},
                    "annotations": {
                        "autoscaling.knative.dev/minScale": "1",
                        "autoscaling.knative.dev/maxScale": "3",
                        "run.googleapis.com/execution-environment": "gen2",
                        "run.googleapis.com/startup-cpu-boost": "true",
                    },
                },
                "spec": {
                    "containerConcurrency": 1,
                    "timeoutSeconds": 60,
                    "serviceAccountName": "fashion-clip-model-server@my-gcp-project.iam.gserviceaccount.com",
                    "containers": [
                        {
                            "name": "model-server",
                            "image": f"{REGISTRY}/fashion-clip-model-server:0.1.0",
                            "args": [
                                "torchserve",
                                "--start",
                                "--foreground",
                                "--ncs",
                                "--ts-config",
                                "/home/model-server/config.properties",
                                "--model-store",
                                "/home/model-server/model-store",
                            ],
                            "ports": [{"name": "http1", "containerPort": 8080}],
                            "env": [
                                {"name": "MODEL_SERVER_MODEL_NAME", "value": "clip"},
                                {"name": "MODEL_SERVER_PRECISION", "value": "auto"},
                                {"name": "MODEL_SERVER_THREADS", "value": "1"},
                                {"name": "TS_DEFAULT_WORKERS_PER_MODEL", "value": "1"},
                                {"name": "TS_INFERENCE_ADDRESS", "value": "http://0.0.0.0:8080"},
                                {"name": "TS_MANAGEMENT_ADDRESS", "value": "http://127.0.0.1:8081"},
                                {"name": "TS_METRICS_ADDRESS", "value": "http://0.0.0.0:8082"},
                            ],
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                            "startupProbe": {
                                "httpGet": {"path": "/ping", "port": 8080},
                                "periodSeconds": 5,
                                "timeoutSeconds": 3,
                                "failureThreshold": 48,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/ping", "port": 8080},
                                "periodSeconds": 15,
                                "timeoutSeconds": 5,
                                "failureThreshold": 4,
                            },
                        }
                    ],
                },
            }
        },
    }


def test_api_service_calls_the_private_model_server_with_an_id_token(cloudrun) -> None:
    service = yaml.safe_load((COMMITTED / "fashion-clip-api.yaml").read_text())
    assert service["metadata"]["annotations"] == {"run.googleapis.com/ingress": "all"}
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    # Internal ingress admits another Cloud Run service only through a VPC network.
    assert (
        annotations["run.googleapis.com/network-interfaces"]
        == '[{"network":"default","subnetwork":"default"}]'
    )
    assert annotations["run.googleapis.com/vpc-access-egress"] == "all-traffic"
    wiring = env(service)
    assert (
        wiring["RECOMMENDER_EMBEDDER__URL"]
        == "https://fashion-clip-model-server-123456789012.europe-west1.run.app"
    )
    assert wiring["RECOMMENDER_EMBEDDER__ID_TOKEN"] == "true"
    assert wiring["RECOMMENDER_EMBEDDER__BACKEND"] == "torchserve"
    assert container(service)["ports"] == [{"name": "http1", "containerPort": 8000}]
    # No readiness probe on Cloud Run: the startup probe asks /readyz before traffic arrives.
    assert container(service)["startupProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert container(service)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}


def test_frontend_service_points_at_the_api_and_keeps_sessions(cloudrun) -> None:
    service = yaml.safe_load((COMMITTED / "fashion-clip-frontend.yaml").read_text())
    spec = service["spec"]["template"]["spec"]
    assert env(service)["FRONTEND_API_URL"] == "https://fashion-clip-api-123456789012.europe-west1.run.app"
    assert (
        service["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/sessionAffinity"] == "true"
    )
    assert spec["containerConcurrency"] == 10
    assert spec["timeoutSeconds"] == 3600
    assert spec["serviceAccountName"] == "fashion-clip-frontend@my-gcp-project.iam.gserviceaccount.com"


@pytest.mark.parametrize("name", FILES)
def test_every_service_has_the_common_fields(name: str) -> None:
    service = yaml.safe_load((COMMITTED / name).read_text())
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["run.googleapis.com/execution-environment"] == "gen2"
    assert annotations["run.googleapis.com/startup-cpu-boost"] == "true"
    assert set(template["spec"]) == {
        "containerConcurrency",
        "timeoutSeconds",
        "serviceAccountName",
        "containers",
    }
    assert set(container(service)) == {
        "name",
        "image",
        "args",
        "ports",
        "env",
        "resources",
        "startupProbe",
        "livenessProbe",
    }


def test_images_equal_helms_for_the_same_values(cloudrun, render, gke_values: Path) -> None:
    digest = "sha256:" + "cd" * 32
    cases = [
        ([gke_values], [], []),
        ([gke_values], [], ["global.imageTag=1a2b3c4", f"api.image.digest={digest}"]),
        ([gke_values], [], ["global.imageRegistry=us-docker.pkg.dev/p/r", "frontend.image.tag=v9"]),
    ]
    for files, sets, set_strings in cases:
        services = generate(cloudrun, files, sets, set_strings)
        helm_images = render([str(f) for f in files], sets, set_strings).images()
        cloud_run_images = {COMPONENT_OF[name]: container(s)["image"] for name, s in services.items()}
        assert cloud_run_images == helm_images


def test_settings_and_probes_equal_helms_except_the_wiring(cloudrun, render, gke_values: Path) -> None:
    services = generate(cloudrun, [gke_values])
    docs = render([str(gke_values)])
    for name, service in services.items():
        component = COMPONENT_OF[name]
        chart_env = docs.env(component)
        cloud_env = env(service)
        assert {k: v for k, v in cloud_env.items() if k not in WIRING} == {
            k: v for k, v in chart_env.items() if k not in WIRING
        }
        chart_container = docs.container(component)
        assert container(service)["args"] == chart_container["args"]
        assert (
            container(service)["startupProbe"]["httpGet"]["path"]
            == chart_container["readinessProbe"]["httpGet"]["path"]
        )
        assert (
            container(service)["livenessProbe"]["httpGet"]["path"]
            == chart_container["livenessProbe"]["httpGet"]["path"]
        )
        port = {p["name"]: p["containerPort"] for p in chart_container["ports"]}["http"]
        assert container(service)["ports"] == [{"name": "http1", "containerPort": port}]


def test_a_changed_profile_shows_up_in_both(cloudrun, render, gke_values: Path) -> None:
    sets = [
        "modelServer.scaling.cpu=2",
        "modelServer.scaling.memory=6Gi",
        "modelServer.scaling.concurrency=2",
        "modelServer.scaling.minInstances=0",
        "modelServer.scaling.maxInstances=8",
        "api.scaling.concurrency=5",
    ]
    services = generate(cloudrun, [gke_values], sets)
    docs = render([str(gke_values)], sets)
    model_server = services["fashion-clip-model-server.yaml"]
    template = model_server["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/minScale"] == "0"
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"] == "8"
    assert template["spec"]["containerConcurrency"] == 2
    assert container(model_server)["resources"] == {"limits": {"cpu": "2", "memory": "6Gi"}}
    assert docs.container("modelServer")["resources"]["limits"] == {"cpu": "2", "memory": "6Gi"}
    hpa = docs.one("HorizontalPodAutoscaler", "fashion-clip-model-server")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 8)  # an HPA's floor is 1
    for source in (env(model_server), docs.env("modelServer")):
        assert (source["TS_DEFAULT_WORKERS_PER_MODEL"], source["MODEL_SERVER_THREADS"]) == ("2", "1")
    api = services["fashion-clip-api.yaml"]
    assert api["spec"]["template"]["spec"]["containerConcurrency"] == 5
    assert (
        env(api)["RECOMMENDER_LIMIT_CONCURRENCY"] == docs.env("api")["RECOMMENDER_LIMIT_CONCURRENCY"] == "8"
    )


def test_kserve_runtime_on_cloud_run(cloudrun, gke_values: Path) -> None:
    services = generate(cloudrun, [gke_values], ["modelServer.runtime=kserve"])
    model_server = container(services["fashion-clip-model-server.yaml"])
    assert model_server["args"][:2] == ["python", "/home/model-server/kserve_predictor.py"]
    assert model_server["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert model_server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert not any(e["name"].startswith("TS_") for e in model_server["env"])
    assert env(services["fashion-clip-api.yaml"])["RECOMMENDER_EMBEDDER__BACKEND"] == "kserve"


BAD_VALUES = [
    ("modelServer.scaling.concurrency=0", "modelServer.scaling.concurrency is 0", "/modelServer/scaling/concurrency"),
    ("modelServer.scaling.memory=512Mi", "modelServer.scaling.memory is 512Mi: the model server needs at least 1024Mi",
     "/modelServer/scaling/memory"),
    ("api.scaling.minInstances=5", "api.scaling.minInstances (5) is greater than api.scaling.maxInstances (3)",
     "api.scaling.minInstances (5) is greater than api.scaling.maxInstances (3)"),
    ("frontend.scaling.concurrency=0", "frontend.scaling.concurrency is 0", "/frontend/scaling/concurrency"),
]  # fmt: skip


@pytest.mark.parametrize(("assignment", "generator_says", "helm_says"), BAD_VALUES)
def test_bad_profiles_are_refused_by_generator_and_chart(
    cloudrun, render_error, gke_values: Path, assignment: str, generator_says: str, helm_says: str
) -> None:
    values = cloudrun.load_values([gke_values], [assignment])
    with pytest.raises(cloudrun.ValuesError) as refused:
        cloudrun.build_services(values)
    assert generator_says in str(refused.value)
    assert helm_says in render_error([str(gke_values)], [assignment])


def test_cli_refuses_with_exit_status_2_and_names_the_key(gke_values: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "scripts/cloudrun.py",
            "-f",
            str(gke_values),
            "--set",
            "api.scalng.cpu=2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "api: Additional properties are not allowed ('scalng' was unexpected)" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("assignment", "says"),
    [
        (
            "frontend.scaling.cpu=500m",
            "frontend.scaling.cpu is 500m: Cloud Run's second-generation environment",
        ),
        (
            "api.scaling.cpu=3",
            "api.scaling.cpu is 3: Cloud Run's second-generation environment takes 1, 2, 4, 6 or 8",
        ),
        ("api.scaling.memory=8Gi", "api.scaling.memory is 8Gi: Cloud Run takes 512Mi to 4096Mi with 1 vCPU"),
        (
            "api.probes.startup.failureThreshold=100",
            "api.probes.startup: failureThreshold x periodSeconds is 300 s",
        ),
        ("api.probes.liveness.timeoutSeconds=20", "api.probes.liveness.timeoutSeconds (20) is greater than"),
    ],
)
def test_cloud_run_limits_are_refused_naming_the_key(cloudrun, gke_values: Path, assignment: str, says: str):
    with pytest.raises(cloudrun.ValuesError) as refused:
        cloudrun.build_services(cloudrun.load_values([gke_values], [assignment]))
    assert says in str(refused.value)


def test_urls_and_service_accounts_need_the_project(cloudrun) -> None:
    with pytest.raises(cloudrun.ValuesError) as refused:
        cloudrun.build_services(cloudrun.load_values([]))
    assert "cloudRun.projectId is empty: set it, or every cloudRun.serviceAccounts.<component>" in str(
        refused.value
    )
    assert (
        "cloudRun.projectNumber is empty: set it, or cloudRun.urls.modelServer and cloudRun.urls.api"
        in str(refused.value)
    )
    explicit = cloudrun.load_values(
        [],
        set_strings=[
            "cloudRun.urls.modelServer=https://ms.example",
            "cloudRun.urls.api=https://api.example",
            "cloudRun.serviceAccounts.modelServer=ms@p.iam.gserviceaccount.com",
            "cloudRun.serviceAccounts.api=api@p.iam.gserviceaccount.com",
            "cloudRun.serviceAccounts.frontend=ui@p.iam.gserviceaccount.com",
        ],
    )
    services = cloudrun.build_services(explicit)
    assert env(services["fashion-clip-api.yaml"])["RECOMMENDER_EMBEDDER__URL"] == "https://ms.example"
    assert env(services["fashion-clip-frontend.yaml"])["FRONTEND_API_URL"] == "https://api.example"
    assert services["fashion-clip-frontend.yaml"]["spec"]["template"]["spec"]["serviceAccountName"] == (
        "ui@p.iam.gserviceaccount.com"
    )


def test_set_types_values_as_helm_does(cloudrun) -> None:
    assert cloudrun.parse_set_value("true") is True
    assert cloudrun.parse_set_value("FALSE") is False
    assert cloudrun.parse_set_value("null") is None
    assert cloudrun.parse_set_value("42") == 42
    assert cloudrun.parse_set_value("0") == 0
    assert cloudrun.parse_set_value("0123") == "0123"  # Helm keeps a leading zero as a string
    assert cloudrun.parse_set_value("1.5") == "1.5"
    assert cloudrun.merge({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}


def test_cloudbuild_pushes_the_images_the_chart_and_cloud_run_use(render, gke_values: Path) -> None:
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    substitutions = {**build["substitutions"], "PROJECT_ID": "my-gcp-project"}

    def substitute(text: str) -> str:
        for key, value in substitutions.items():
            text = text.replace(f"${{{key}}}", value)
        return text

    pushed = sorted(substitute(image) for image in build["images"])
    assert pushed == sorted(render([str(gke_values)]).images().values())
    tagged = sorted(
        substitute(arg.removeprefix("--tag="))
        for step in build["steps"]
        for arg in step["args"]
        if arg.startswith("--tag=")
    )
    assert tagged == pushed
    dockerfiles = sorted(
        arg.removeprefix("--file=")
        for step in build["steps"]
        for arg in step["args"]
        if arg.startswith("--file=")
    )
    assert dockerfiles == ["frontend/Dockerfile", "model-server/Dockerfile", "services/Dockerfile"]
    # The default tag is the chart's appVersion, the tag the chart uses when none is set.
    chart = yaml.safe_load((ROOT / "charts" / "fashion-clip" / "Chart.yaml").read_text())
    assert build["substitutions"]["_TAG"] == chart["appVersion"]


def test_admin_token_comes_from_secret_manager(cloudrun, gke_values: Path) -> None:
    services = generate(
        cloudrun, [gke_values], set_strings=["api.adminToken.existingSecret=fashion-clip-admin-token"]
    )
    [variable] = [e for e in container(services["fashion-clip-api.yaml"])["env"] if "valueFrom" in e]
    assert variable == {
        "name": "RECOMMENDER_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "fashion-clip-admin-token", "key": "latest"}},
    }
    with pytest.raises(cloudrun.ValuesError) as refused:
        cloudrun.build_services(cloudrun.load_values([gke_values], ["api.adminToken.generate=true"]))
    assert "api.adminToken.generate: Cloud Run cannot make up a secret" in str(refused.value)
