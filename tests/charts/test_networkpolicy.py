"""frontend -> API -> model server: nothing but the API reaches the model server."""

from __future__ import annotations


def pod_labels(docs, component: str) -> dict[str, str]:
    if component == "modelServer" and docs.is_kserve():
        return docs.one("InferenceService", docs.name(component))["spec"]["predictor"]["labels"]
    return docs.one("Deployment", docs.name(component))["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return selector["matchLabels"].items() <= labels.items()


def test_each_component_has_one_ingress_policy_selecting_only_its_pods(render_profile, profile: str) -> None:
    docs = render_profile(profile)
    components = ("modelServer", "api", "frontend")
    for component in components:
        policy = docs.one("NetworkPolicy", docs.name(component))["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        assert [c for c in components if selects(policy["podSelector"], pod_labels(docs, c))] == [component]


def test_only_the_api_reaches_the_torchserve_model_server(render) -> None:
    docs = render()
    rules = docs.one("NetworkPolicy", "fashion-clip-model-server")["spec"]["ingress"]
    assert len(rules) == 1
    [peer] = rules[0]["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector: this namespace's API pods only
    matched = [
        c for c in ("modelServer", "api", "frontend") if selects(peer["podSelector"], pod_labels(docs, c))
    ]
    assert matched == ["api"]
    assert rules[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The named port is the inference port; management (8081) and metrics (8082) stay closed.
    ports = {p["name"]: p["containerPort"] for p in docs.container("modelServer")["ports"]}
    assert ports["http"] == 8080


def test_api_and_ui_accept_anyone_on_their_http_port_only(render) -> None:
    docs = render()
    for component in ("api", "frontend"):
        rules = docs.one("NetworkPolicy", docs.name(component))["spec"]["ingress"]
        assert rules == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_kserve_predictor_admits_the_api_and_knatives_traffic_path(render) -> None:
    docs = render(sets=["modelServer.runtime=kserve"])
    rules = docs.one("NetworkPolicy", "fashion-clip-model-server")["spec"]["ingress"]
    api_rule, *namespace_rules = rules
    assert selects(api_rule["from"][0]["podSelector"], pod_labels(docs, "api"))
    assert [
        r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for r in namespace_rules
    ] == [
        "knative-serving",
        "kourier-system",
        "istio-system",
    ]


def test_network_policies_can_be_switched_off(render) -> None:
    assert render(sets=["networkPolicy.enabled=false"]).select("NetworkPolicy") == []
