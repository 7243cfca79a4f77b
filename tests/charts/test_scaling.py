"""One scaling profile per component drives resources, the HPA, the servers' own concurrency and KServe."""

from __future__ import annotations

import pytest

CLOUD_RUN_DEFAULTS = {"cpu": 1, "memory": "2Gi", "concurrency": 1, "minInstances": 1, "maxInstances": 3}

# (cpu, memory) per profile and component, as the values files say.
RESOURCES = {
    "defaults": {"modelServer": ("1", "2Gi"), "api": ("1", "2Gi"), "frontend": ("1", "2Gi")},
    "gke": {"modelServer": ("1", "2Gi"), "api": ("1", "2Gi"), "frontend": ("1", "2Gi")},
    "kserve": {"modelServer": ("1", "2Gi"), "api": ("1", "2Gi"), "frontend": ("1", "2Gi")},
    "kind": {"modelServer": ("1", "2Gi"), "api": ("500m", "1Gi"), "frontend": ("500m", "1Gi")},
}
MAX_REPLICAS = {"defaults": 3, "gke": 3, "kserve": 3, "kind": 2}


def test_profile_defaults_are_the_cloud_run_settings(chart_values: dict) -> None:
    assert chart_values["modelServer"]["scaling"] == CLOUD_RUN_DEFAULTS
    assert chart_values["api"]["scaling"] == CLOUD_RUN_DEFAULTS
    # One websocket per open browser tab: concurrency 1 would be one user per UI instance.
    assert chart_values["frontend"]["scaling"] == {**CLOUD_RUN_DEFAULTS, "concurrency": 10}


def test_resources_are_the_profile_with_requests_equal_to_limits(
    render_profile, profile: str, component: str
):
    resources = render_profile(profile).container(component)["resources"]
    cpu, memory = RESOURCES[profile][component]
    assert resources == {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def test_hpa_follows_the_profile(render_profile, profile: str, component: str) -> None:
    docs = render_profile(profile)
    if component == "modelServer" and profile == "kserve":
        assert docs.select("HorizontalPodAutoscaler", docs.name(component)) == []  # Knative scales it
        return
    hpa = docs.one("HorizontalPodAutoscaler", docs.name(component))["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": docs.name(component),
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, MAX_REPLICAS[profile])
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
        }
    ]
    # The HPA owns the replica count: a `replicas` in the Deployment would reset it on every upgrade.
    assert "replicas" not in docs.one("Deployment", docs.name(component))["spec"]


def test_servers_concurrency_settings_follow_the_profile(render) -> None:
    docs = render()
    assert docs.env("modelServer")["TS_DEFAULT_WORKERS_PER_MODEL"] == "1"
    assert docs.env("modelServer")["MODEL_SERVER_THREADS"] == "1"
    # uvicorn counts the connection it is judging: concurrency 1 + headroom 3.
    assert docs.env("api")["RECOMMENDER_LIMIT_CONCURRENCY"] == "4"


def test_a_changed_profile_shows_up_everywhere(render) -> None:
    docs = render(
        sets=[
            "modelServer.scaling.cpu=4",
            "modelServer.scaling.memory=6Gi",
            "modelServer.scaling.concurrency=2",
            "modelServer.scaling.minInstances=2",
            "modelServer.scaling.maxInstances=5",
            "api.scaling.concurrency=3",
            "api.scaling.maxInstances=7",
        ]
    )
    limits = {"cpu": "4", "memory": "6Gi"}
    assert docs.container("modelServer")["resources"] == {"requests": limits, "limits": limits}
    hpa = docs.one("HorizontalPodAutoscaler", docs.name("modelServer"))["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert docs.env("modelServer")["TS_DEFAULT_WORKERS_PER_MODEL"] == "2"
    assert docs.env("modelServer")["MODEL_SERVER_THREADS"] == "2"  # 4 CPUs over 2 workers
    assert docs.env("api")["RECOMMENDER_LIMIT_CONCURRENCY"] == "6"
    assert docs.one("HorizontalPodAutoscaler", docs.name("api"))["spec"]["maxReplicas"] == 7


@pytest.mark.parametrize(
    ("cpu", "concurrency", "threads"),
    [("500m", 1, "1"), ("1", 1, "1"), ("2", 1, "2"), ("1500m", 1, "1"), ("8", 3, "2"), ("1", 4, "1")],
)
def test_torch_threads_share_the_profiles_cpus(render, cpu: str, concurrency: int, threads: str) -> None:
    docs = render(sets=[f"modelServer.scaling.cpu={cpu}", f"modelServer.scaling.concurrency={concurrency}"])
    assert docs.env("modelServer")["MODEL_SERVER_THREADS"] == threads


def test_min_instances_zero_keeps_one_replica_under_an_hpa(render) -> None:
    docs = render(sets=["api.scaling.minInstances=0"])
    assert docs.one("HorizontalPodAutoscaler", docs.name("api"))["spec"]["minReplicas"] == 1


def test_without_autoscaling_the_deployment_runs_min_instances(render) -> None:
    docs = render(sets=["frontend.autoscaling.enabled=false", "frontend.scaling.minInstances=2"])
    assert docs.select("HorizontalPodAutoscaler", docs.name("frontend")) == []
    assert docs.one("Deployment", docs.name("frontend"))["spec"]["replicas"] == 2


def test_kserve_inference_service_follows_the_profile(render) -> None:
    docs = render(
        sets=[
            "modelServer.runtime=kserve",
            "modelServer.scaling.minInstances=0",
            "modelServer.scaling.maxInstances=4",
            "modelServer.scaling.concurrency=2",
            "modelServer.scaling.cpu=2",
            "modelServer.scaling.memory=3Gi",
        ]
    )
    isvc = docs.one("InferenceService", docs.name("modelServer"))
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 0  # serverless scales to zero; an HPA cannot
    assert predictor["maxReplicas"] == 4
    assert predictor["scaleMetric"] == "concurrency"
    assert predictor["scaleTarget"] == 2
    assert predictor["containerConcurrency"] == 2
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["image"] == "fashion-clip-model-server:0.1.0"
    assert container["args"] == [
        "python",
        "/home/model-server/kserve_predictor.py",
        "--http_port",
        "8080",
        "--enable_grpc",
        "false",
    ]
    assert "command" not in container  # the image's tini stays in front
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    limits = {"cpu": "2", "memory": "3Gi"}
    assert container["resources"] == {"requests": limits, "limits": limits}
    assert container["envFrom"] == [{"configMapRef": {"name": "fashion-clip-model-server"}}]
    assert docs.env("modelServer") == {
        "MODEL_SERVER_MODEL_NAME": "clip",
        "MODEL_SERVER_PRECISION": "auto",
        "MODEL_SERVER_THREADS": "1",
    }
    # No TorchServe Deployment, Service, HPA or PDB beside it.
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert docs.select(kind, docs.name("modelServer")) == []


def test_api_is_wired_to_the_model_server_of_the_runtime(render) -> None:
    torchserve = render().env("api")
    assert torchserve["RECOMMENDER_EMBEDDER__BACKEND"] == "torchserve"
    assert torchserve["RECOMMENDER_EMBEDDER__URL"] == "http://fashion-clip-model-server:8080"
    assert torchserve["RECOMMENDER_EMBEDDER__MODEL_NAME"] == "clip"
    kserve = render(sets=["modelServer.runtime=kserve"]).env("api")
    assert kserve["RECOMMENDER_EMBEDDER__BACKEND"] == "kserve"
    # Knative's cluster-local route of the predictor.
    assert kserve["RECOMMENDER_EMBEDDER__URL"] == (
        "http://fashion-clip-model-server-predictor.fashion-clip.svc.cluster.local"
    )
    assert render().env("frontend")["FRONTEND_API_URL"] == "http://fashion-clip-api:8000"


def test_settings_are_exactly_the_env_block_plus_what_the_chart_derives(render) -> None:
    docs = render(
        set_strings=["api.env.RECOMMENDER_INDEX_DIR=/data/index", "frontend.env.FRONTEND_TITLE=Shop"]
    )
    assert docs.env("modelServer") == {
        "MODEL_SERVER_MODEL_NAME": "clip",
        "MODEL_SERVER_PRECISION": "auto",
        "MODEL_SERVER_THREADS": "1",
        "TS_DEFAULT_WORKERS_PER_MODEL": "1",
        "TS_INFERENCE_ADDRESS": "http://0.0.0.0:8080",
        "TS_MANAGEMENT_ADDRESS": "http://127.0.0.1:8081",
        "TS_METRICS_ADDRESS": "http://0.0.0.0:8082",
    }
    assert docs.env("api") == {
        "RECOMMENDER_EMBEDDER__BACKEND": "torchserve",
        "RECOMMENDER_EMBEDDER__MODEL_NAME": "clip",
        "RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS": "10",
        "RECOMMENDER_EMBEDDER__URL": "http://fashion-clip-model-server:8080",
        "RECOMMENDER_HOST": "0.0.0.0",
        "RECOMMENDER_INDEX_DIR": "/data/index",
        "RECOMMENDER_LIMIT_CONCURRENCY": "4",
        "RECOMMENDER_MAX_UPLOAD_BYTES": "10485760",
        "RECOMMENDER_PORT": "8000",
    }
    assert docs.env("frontend") == {
        "FRONTEND_API_URL": "http://fashion-clip-api:8000",
        "FRONTEND_TITLE": "Shop",
        "STREAMLIT_SERVER_ADDRESS": "0.0.0.0",
        "STREAMLIT_SERVER_PORT": "8501",
    }


def test_a_settings_change_rolls_the_pods(render) -> None:
    before = render().one("Deployment", "fashion-clip-api")["spec"]["template"]["metadata"]["annotations"]
    # Settings are strings (ConfigMap data): --set-string, as --set would type 20 as a number.
    after = render(set_strings=["api.env.RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS=20"])
    changed = after.one("Deployment", "fashion-clip-api")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/settings"] != changed["checksum/settings"]
