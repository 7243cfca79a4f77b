#!/usr/bin/env python
"""Write the Cloud Run services (Knative `serving.knative.dev/v1` YAML) from the chart's values.

    python scripts/cloudrun.py -f charts/fashion-clip/values-gke.yaml            # -> deploy/cloudrun/
    python scripts/cloudrun.py -f my-values.yaml --set global.imageTag=1a2b3c4 --out build/cloudrun
    gcloud run services replace deploy/cloudrun/fashion-clip-model-server.yaml --region europe-west1

The chart's values.yaml, then each `-f` file, then each `--set`, merged as Helm merges them; so
the Cloud Run services run the same images (repository, tag or digest), the same scaling profile
(cpu, memory, concurrency -> containerConcurrency, min/max -> minScale/maxScale), the same
settings and the same probe paths as the chart renders. Values are checked against the chart's
values.schema.json and against Cloud Run's own limits; a bad value is refused naming its key.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "fashion-clip"
DEFAULT_OUT = ROOT / "deploy" / "cloudrun"
DEFAULT_RELEASE = "fashion-clip"

COMPONENTS = ("modelServer", "api", "frontend")
SLUGS = {"modelServer": "model-server", "api": "api", "frontend": "frontend"}
# The images' ports (docs/contracts.md), as the chart's `fashion-clip.facts` has them.
HTTP_PORT = {"modelServer": 8080, "api": 8000, "frontend": 8501}
TS_METRICS_PORT = 8082
TS_MANAGEMENT_PORT = 8081
# Below these an instance cannot hold what it loads (the model server: weights, the JVM and the
# unpacked archive). values.schema.json has the same floors as patterns.
MIN_MEMORY_MIB = {"modelServer": 1024, "api": 512, "frontend": 512}
# Cloud Run, second-generation execution environment: whole vCPUs only (fractions need gen1),
# and memory within a range that depends on the vCPUs.
CLOUD_RUN_MEMORY_MIB = {1: (512, 4096), 2: (512, 8192), 4: (2048, 16384), 6: (4096, 24576), 8: (4096, 32768)}
CLOUD_RUN_STARTUP_PROBE_MAX_SECONDS = 240

logger = logging.getLogger("cloudrun")


class ValuesError(Exception):
    """Values that cannot become Cloud Run services; the message names every bad key."""


# --- Values: Helm's merge, --set and the schema -----------------------------------------------


def merge(base: dict, override: dict) -> dict:
    """Helm's coalescing: maps merge key by key, anything else replaces, null deletes."""
    merged = deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = deepcopy(value)
    return merged


def parse_set_value(text: str) -> Any:
    """`--set` typing as Helm's strvals does it: true/false/null (any case) and integers without a
    leading zero are typed, the rest stays a string. One KEY=VALUE per flag (no lists, no commas)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "null":
        return None
    if re.fullmatch(r"0|-?[1-9][0-9]*", text):
        return int(text)
    return text


def apply_set(values: dict, assignment: str, as_string: bool = False) -> dict:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ValuesError(f"--set {assignment!r}: expected KEY=VALUE")
    override: dict = {}
    node = override
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = raw if as_string else parse_set_value(raw)
    return merge(values, override)


def load_values(
    files: list[Path],
    sets: list[str] | None = None,
    set_strings: list[str] | None = None,
    chart: Path = CHART,
) -> dict:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    for path in files:
        values = merge(values, yaml.safe_load(Path(path).read_text()) or {})
    for assignment in sets or []:
        values = apply_set(values, assignment)
    for assignment in set_strings or []:
        values = apply_set(values, assignment, as_string=True)
    return values


def _mib(memory: str) -> int:
    number, unit = int(memory[:-2]), memory[-2:]
    return number * 1024 if unit == "Gi" else number


def _cpu(cpu: int | float | str) -> float:
    text = str(cpu)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def profile_errors(values: dict) -> list[str]:
    """The scaling profiles against what the services need and what Cloud Run accepts.

    Runs before the schema so the common mistakes get a sentence of their own; a value of the
    wrong type is skipped here and left to the schema.
    """
    errors: list[str] = []
    for component in COMPONENTS:
        scaling = values.get(component, {}).get("scaling", {})
        key = f"{component}.scaling"
        concurrency = scaling.get("concurrency")
        if isinstance(concurrency, int) and not 1 <= concurrency <= 1000:
            errors.append(
                f"{key}.concurrency is {concurrency}: an instance must take 1 to 1000 requests at once"
            )
        memory = scaling.get("memory")
        memory_ok = isinstance(memory, str) and re.fullmatch(r"[1-9][0-9]*(Mi|Gi)", memory)
        if memory_ok and _mib(memory) < MIN_MEMORY_MIB[component]:
            errors.append(
                f"{key}.memory is {memory}: the {SLUGS[component].replace('-', ' ')} needs at least "
                f"{MIN_MEMORY_MIB[component]}Mi"
            )
        low, high = scaling.get("minInstances"), scaling.get("maxInstances")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            errors.append(f"{key}.minInstances ({low}) is greater than {key}.maxInstances ({high})")
        cpu = scaling.get("cpu")
        try:
            vcpus = _cpu(cpu)
        except (TypeError, ValueError):
            continue  # the schema names it
        if vcpus not in CLOUD_RUN_MEMORY_MIB:
            errors.append(
                f"{key}.cpu is {cpu}: Cloud Run's second-generation environment takes 1, 2, 4, 6 or 8 vCPUs"
            )
        elif memory_ok:
            floor, ceiling = CLOUD_RUN_MEMORY_MIB[int(vcpus)]
            if not floor <= _mib(memory) <= ceiling:
                errors.append(
                    f"{key}.memory is {memory}: Cloud Run takes {floor}Mi to {ceiling}Mi with {int(vcpus)} vCPU"
                )
    return errors


def probe_errors(values: dict) -> list[str]:
    errors = []
    for component in COMPONENTS:
        key, probes = _probes(values, component)
        for kind in ("startup", "liveness"):
            probe = probes.get(kind, {})
            period, timeout = probe.get("periodSeconds"), probe.get("timeoutSeconds")
            if isinstance(period, int) and isinstance(timeout, int) and timeout > period:
                errors.append(
                    f"{key}.{kind}.timeoutSeconds ({timeout}) is greater than {key}.{kind}.periodSeconds "
                    f"({period}): Cloud Run refuses that"
                )
        startup = probes.get("startup", {})
        period, threshold = startup.get("periodSeconds"), startup.get("failureThreshold")
        if isinstance(period, int) and isinstance(threshold, int):
            if period * threshold > CLOUD_RUN_STARTUP_PROBE_MAX_SECONDS:
                errors.append(
                    f"{key}.startup: failureThreshold x periodSeconds is {period * threshold} s; "
                    f"Cloud Run allows at most {CLOUD_RUN_STARTUP_PROBE_MAX_SECONDS} s"
                )
    return errors


def cloud_run_errors(values: dict) -> list[str]:
    """What only Cloud Run needs: a project to name the service accounts and the run.app URLs by."""
    cloud_run = values.get("cloudRun")
    if not isinstance(cloud_run, dict):
        return []
    errors = []
    accounts, urls = cloud_run.get("serviceAccounts", {}), cloud_run.get("urls", {})
    if not cloud_run.get("projectId") and not all(accounts.get(c) for c in COMPONENTS):
        errors.append("cloudRun.projectId is empty: set it, or every cloudRun.serviceAccounts.<component>")
    if not cloud_run.get("projectNumber") and not all(urls.get(c) for c in ("modelServer", "api")):
        errors.append(
            "cloudRun.projectNumber is empty: set it, or cloudRun.urls.modelServer and cloudRun.urls.api"
        )
    if values.get("api", {}).get("adminToken", {}).get("generate"):
        errors.append(
            "api.adminToken.generate: Cloud Run cannot make up a secret; create one in Secret Manager and "
            "set api.adminToken.existingSecret to its name"
        )
    return errors


def schema_errors(values: dict, chart: Path = CHART) -> list[str]:
    schema = json.loads((chart / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = []
    for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        errors.append(f"{where}: {error.message}")
    return errors


def check(values: dict, chart: Path = CHART) -> None:
    errors = profile_errors(values) + probe_errors(values) + cloud_run_errors(values)
    # The schema repeats some of the same findings in its own words: keep the first sentence per key.
    named = {error.split(" ", 1)[0].rstrip(":") for error in errors}
    errors += [error for error in schema_errors(values, chart) if error.split(":", 1)[0] not in named]
    if errors:
        raise ValuesError("refusing these values:\n  " + "\n  ".join(dict.fromkeys(errors)))


# --- The chart's naming and settings, for Cloud Run ----------------------------------------------


def fullname(values: dict, release: str, chart_name: str) -> str:
    """The chart's `fashion-clip.fullname`."""
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:36].rstrip("-")
    name = values.get("nameOverride") or chart_name
    full = release if name in release else f"{release}-{name}"
    return full[:36].rstrip("-")


def image_ref(values: dict, component: str, app_version: str) -> str:
    """The chart's `fashion-clip.image`: [registry/]repository, then @digest, else :tag."""
    image = values[component]["image"]
    repository = image["repository"]
    registry = values["global"].get("imageRegistry", "")
    if registry:
        repository = f"{registry.rstrip('/')}/{repository}"
    if image.get("digest"):
        return f"{repository}@{image['digest']}"
    tag = image.get("tag") or values["global"].get("imageTag") or app_version
    return f"{repository}:{tag}"


def _probes(values: dict, component: str) -> tuple[str, dict]:
    block = values.get(component, {})
    if component == "modelServer":
        runtime = block.get("runtime", "torchserve")
        return f"modelServer.{runtime}.probes", block.get(runtime, {}).get("probes", {})
    return f"{component}.probes", block.get("probes", {})


def _args(values: dict, component: str) -> list[str]:
    """The chart's `fashion-clip.args`: the image's CMD, its ENTRYPOINT left in place."""
    block = values[component]
    if component == "modelServer":
        return list(block[block["runtime"]]["args"])
    return list(block["args"])


def threads(scaling: dict) -> int:
    """The chart's `fashion-clip.threads`: torch threads per worker, at least 1."""
    millis = int(_cpu(scaling["cpu"]) * 1000)
    return max(1, millis // (1000 * scaling["concurrency"]))


def service_url(values: dict, component: str, name: str) -> str:
    explicit = values["cloudRun"]["urls"].get(component, "")
    if explicit:
        return explicit
    cloud_run = values["cloudRun"]
    if not cloud_run["projectNumber"]:
        raise ValuesError(
            f"cloudRun.projectNumber is empty: set it (or cloudRun.urls.{component}) so the callers of "
            f"{name} know its URL"
        )
    # Cloud Run's deterministic URL: https://<service>-<project number>.<region>.run.app
    return f"https://{name}-{cloud_run['projectNumber']}.{cloud_run['region']}.run.app"


def settings(values: dict, component: str, names: dict[str, str]) -> dict[str, str]:
    """The chart's `fashion-clip.settings`, with the wiring through Cloud Run URLs and ID tokens."""
    block = values[component]
    env = {key: str(value) for key, value in block.get("env", {}).items()}
    if component == "modelServer":
        env["MODEL_SERVER_THREADS"] = str(threads(block["scaling"]))
        if block["runtime"] == "torchserve":
            env["TS_DEFAULT_WORKERS_PER_MODEL"] = str(block["scaling"]["concurrency"])
            env["TS_INFERENCE_ADDRESS"] = f"http://0.0.0.0:{HTTP_PORT[component]}"
            env["TS_METRICS_ADDRESS"] = f"http://0.0.0.0:{TS_METRICS_PORT}"
            env["TS_MANAGEMENT_ADDRESS"] = f"http://127.0.0.1:{TS_MANAGEMENT_PORT}"
    elif component == "api":
        model_server = values["modelServer"]
        env["RECOMMENDER_HOST"] = "0.0.0.0"
        env["RECOMMENDER_PORT"] = str(HTTP_PORT[component])
        env["RECOMMENDER_LIMIT_CONCURRENCY"] = str(
            block["scaling"]["concurrency"] + block["connectionHeadroom"]
        )
        env["RECOMMENDER_EMBEDDER__BACKEND"] = model_server["runtime"]
        env["RECOMMENDER_EMBEDDER__URL"] = service_url(values, "modelServer", names["modelServer"])
        env["RECOMMENDER_EMBEDDER__MODEL_NAME"] = (
            model_server.get("env", {}).get("MODEL_SERVER_MODEL_NAME") or "clip"
        )
        # The model server admits authenticated callers only: the API presents a Google ID token
        # whose audience is the model server's URL (the default audience).
        env["RECOMMENDER_EMBEDDER__ID_TOKEN"] = "true"
    else:
        env["FRONTEND_API_URL"] = service_url(values, "api", names["api"])
        env["STREAMLIT_SERVER_ADDRESS"] = "0.0.0.0"
        env["STREAMLIT_SERVER_PORT"] = str(HTTP_PORT[component])
    return dict(sorted(env.items()))


def secret_env(values: dict, component: str) -> list[dict]:
    """The API's admin token from Secret Manager: the chart's Secret of the same name, latest version."""
    secret = values[component].get("adminToken", {}).get("existingSecret") if component == "api" else ""
    if not secret:
        return []
    return [
        {"name": "RECOMMENDER_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "latest"}}}
    ]


def _probe(probe: dict, port: int) -> dict:
    rendered: dict[str, Any] = {"httpGet": {"path": probe["path"], "port": port}}
    for field in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"):
        if field in probe:
            rendered[field] = probe[field]
    return rendered


def service_account(values: dict, component: str, name: str) -> str:
    explicit = values["cloudRun"]["serviceAccounts"].get(component, "")
    if explicit:
        return explicit
    project = values["cloudRun"]["projectId"]
    if not project:
        raise ValuesError(f"cloudRun.projectId is empty: set it (or cloudRun.serviceAccounts.{component})")
    return f"{name}@{project}.iam.gserviceaccount.com"


def cpu_text(cpu: int | float | str) -> str:
    """As Helm's toString prints it: 1 and 1.0 -> "1", 0.5 -> "0.5", "500m" as is."""
    if isinstance(cpu, float) and cpu.is_integer():
        return str(int(cpu))
    return str(cpu)


def build_service(values: dict, component: str, names: dict[str, str], app: str, app_version: str) -> dict:
    block = values[component]
    cloud_run = values["cloudRun"]
    scaling = block["scaling"]
    name = names[component]
    port = HTTP_PORT[component]
    _, probes = _probes(values, component)
    # Cloud Run labels are Google Cloud labels: no dots or slashes, so no app.kubernetes.io/*.
    labels = {"app": app, "component": SLUGS[component]}

    service_annotations = {
        # The model server answers the API only: internal ingress, and IAM (run.invoker) for the
        # API's service account. The API and the UI face users.
        "run.googleapis.com/ingress": "internal" if component == "modelServer" else "all",
    }
    template_annotations = {
        "autoscaling.knative.dev/minScale": str(scaling["minInstances"]),
        "autoscaling.knative.dev/maxScale": str(scaling["maxInstances"]),
        "run.googleapis.com/execution-environment": "gen2",
        "run.googleapis.com/startup-cpu-boost": "true" if cloud_run["startupCpuBoost"] else "false",
    }
    if component == "api":
        # Internal ingress counts a call from another Cloud Run service as internal only when it
        # leaves through a VPC network: Direct VPC egress, all traffic.
        vpc = cloud_run["vpc"]
        template_annotations["run.googleapis.com/network-interfaces"] = json.dumps(
            [{"network": vpc["network"], "subnetwork": vpc["subnetwork"]}], separators=(",", ":")
        )
        template_annotations["run.googleapis.com/vpc-access-egress"] = "all-traffic"
    if component == "frontend":
        # Streamlit keeps the session on one instance over its websocket; reconnects must return there.
        template_annotations["run.googleapis.com/sessionAffinity"] = "true"

    container = {
        "name": SLUGS[component],
        "image": image_ref(values, component, app_version),
        "args": _args(values, component),
        # Cloud Run routes to one port, named http1 for HTTP/1.1.
        "ports": [{"name": "http1", "containerPort": port}],
        "env": [{"name": key, "value": value} for key, value in settings(values, component, names).items()]
        + secret_env(values, component),
        "resources": {"limits": {"cpu": cpu_text(scaling["cpu"]), "memory": scaling["memory"]}},
        # Cloud Run has no readiness probe: an instance gets traffic once its startup probe passes,
        # so the startup probe asks the readiness question (the chart's readiness path).
        "startupProbe": _probe({**probes["startup"], "path": probes["readiness"]["path"]}, port),
        "livenessProbe": _probe(probes["liveness"], port),
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "labels": {**labels, "cloud.googleapis.com/location": cloud_run["region"]},
            "annotations": service_annotations,
        },
        "spec": {
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations},
                "spec": {
                    "containerConcurrency": scaling["concurrency"],
                    "timeoutSeconds": cloud_run["requestTimeoutSeconds"][component],
                    "serviceAccountName": service_account(values, component, name),
                    "containers": [container],
                },
            },
        },
    }


def build_services(values: dict, release: str = DEFAULT_RELEASE, chart: Path = CHART) -> dict[str, dict]:
    """Checked values -> {file name: Cloud Run service}, in deployment order (callee first)."""
    check(values, chart)
    chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    base = fullname(values, release, chart_meta["name"])
    names = {component: f"{base}-{SLUGS[component]}" for component in COMPONENTS}
    return {
        f"{names[component]}.yaml": build_service(
            values, component, names, base, str(chart_meta["appVersion"])
        )
        for component in COMPONENTS
    }


def render(service: dict, sources: list[str]) -> str:
    header = (
        "# Generated by scripts/cloudrun.py from "
        + ", ".join(sources)
        + "; do not edit.\n# Deploy: gcloud run services replace <this file> --region "
        + service["metadata"]["labels"]["cloud.googleapis.com/location"]
        + "\n"
    )
    return header + yaml.safe_dump(service, sort_keys=False, width=1000)


def write(services: dict[str, dict], out: Path, sources: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, service in services.items():
        path = out / file_name
        path.write_text(render(service, sources))
        written.append(path)
    return written


def _relative(path: Path) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-f", "--values", action="append", default=[], type=Path, help="values file (repeatable)"
    )
    parser.add_argument("--set", action="append", default=[], dest="sets", help="KEY=VALUE, as helm --set")
    parser.add_argument(
        "--set-string", action="append", default=[], dest="set_strings", help="KEY=VALUE as a string"
    )
    parser.add_argument("--release", default=DEFAULT_RELEASE, help="the release name the chart would get")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    try:
        values = load_values(args.values, args.sets, args.set_strings)
        services = build_services(values, args.release)
    except ValuesError as exc:
        logger.error("%s", exc)
        return 2
    sources = [_relative(CHART / "values.yaml"), *(_relative(p) for p in args.values)]
    sources += [f"--set {s}" for s in args.sets] + [f"--set-string {s}" for s in args.set_strings]
    for path in write(services, args.out, sources):
        logger.info("wrote %s", _relative(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
