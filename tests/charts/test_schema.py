"""values.schema.json (and the chart's own checks) refuse typos, wrong types and bad profiles, naming the key."""

from __future__ import annotations

import json
import re

import pytest


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        # A typo'd key, at the top, in a component and in a profile.
        ("modelServr.runtime=kserve", "additional properties 'modelServr' not allowed"),
        ("api.scalng.cpu=2", "at '/api': additional properties 'scalng' not allowed"),
        (
            "frontend.scaling.maxInstance=4",
            "at '/frontend/scaling': additional properties 'maxInstance' not allowed",
        ),
        # Wrong types and values.
        ("api.scaling.concurrency=two", "at '/api/scaling/concurrency': got string, want integer"),
        (
            "modelServer.runtime=triton",
            "at '/modelServer/runtime': value must be one of 'torchserve', 'kserve'",
        ),
        ("api.scaling.cpu=lots", "at '/api/scaling/cpu': 'anyOf' failed"),
        ("networkPolicy.enabled=maybe", "at '/networkPolicy/enabled': got string, want boolean"),
        # The scaling profile's limits.
        (
            "modelServer.scaling.concurrency=0",
            "at '/modelServer/scaling/concurrency': minimum: got 0, want 1",
        ),
        ("api.scaling.maxInstances=0", "at '/api/scaling/maxInstances': minimum: got 0, want 1"),
        (
            "modelServer.scaling.memory=512Mi",
            "at '/modelServer/scaling/memory': '512Mi' does not match pattern",
        ),
        (
            "modelServer.scaling.memory=1000Mi",
            "at '/modelServer/scaling/memory': '1000Mi' does not match pattern",
        ),
        ("api.scaling.memory=256Mi", "at '/api/scaling/memory': '256Mi' does not match pattern"),
        ("api.scaling.memory=2GB", "at '/api/scaling/memory': '2GB' does not match pattern"),
        # What the chart derives may not be set by hand, and a token is no ConfigMap value.
        ("api.env.RECOMMENDER_LIMIT_CONCURRENCY=9", "invalid propertyName 'RECOMMENDER_LIMIT_CONCURRENCY'"),
        ("api.env.RECOMMENDER_ADMIN_TOKEN=secret", "invalid propertyName 'RECOMMENDER_ADMIN_TOKEN'"),
        (
            "modelServer.env.TS_DEFAULT_WORKERS_PER_MODEL=4",
            "invalid propertyName 'TS_DEFAULT_WORKERS_PER_MODEL'",
        ),
        ("api.env.RECOMENDER_PORT=1", "invalid propertyName 'RECOMENDER_PORT'"),
        ("frontend.service.nodePort=8501", "at '/frontend/service/nodePort': 'anyOf' failed"),
    ],
)
def test_schema_refuses_naming_the_key(render_error, assignment: str, expected: str) -> None:
    stderr = render_error(sets=[assignment])
    assert "values don't meet the specifications of the schema" in stderr
    assert expected in stderr


def test_min_above_max_is_refused_naming_both_keys(render_error) -> None:
    stderr = render_error(sets=["api.scaling.minInstances=4"])
    assert "api.scaling.minInstances (4) is greater than api.scaling.maxInstances (3)" in stderr


def test_memory_floors_accept_exactly_the_needed_sizes(render) -> None:
    """The patterns' boundaries: 1024Mi and 1Gi are enough for the model server, 512Mi for the API."""
    docs = render(sets=["modelServer.scaling.memory=1024Mi", "api.scaling.memory=512Mi"])
    model_server = docs.container("modelServer")["resources"]["limits"]["memory"]
    api = docs.container("api")["resources"]["limits"]["memory"]
    assert (model_server, api) == ("1024Mi", "512Mi")


def test_memory_patterns_agree_with_arithmetic(chart_dir) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    floors = {"modelServer": 1024, "api": 512, "frontend": 512}
    for component, floor in floors.items():
        pattern = schema["properties"][component]["properties"]["scaling"]["properties"]["memory"]["pattern"]
        for n in range(1, 4200):
            for unit, mib in (("Mi", n), ("Gi", n * 1024)):
                assert bool(re.match(pattern, f"{n}{unit}")) == (mib >= floor), f"{component} {n}{unit}"


def test_every_value_is_documented(chart_dir) -> None:
    """Each key of values.yaml has a comment right above it, or its parent key has one (a documented block)."""
    lines = (chart_dir / "values.yaml").read_text().splitlines()
    keys = []  # (indent, key, commented)
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if match:
            commented = i > 0 and lines[i - 1].strip().startswith("#")
            keys.append((len(match.group(1)), match.group(2), commented))
    undocumented = []
    for n, (indent, key, commented) in enumerate(keys):
        parent = next((k for k in reversed(keys[:n]) if k[0] < indent), None)
        if not commented and not (parent and parent[2]):
            undocumented.append(key)
    assert undocumented == []
