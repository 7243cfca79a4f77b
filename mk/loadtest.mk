# Locust load tests against a running API: `make demo` locally, or any URL (kind, Cloud Run).
# Reports go to loadtest/reports/<UTC time>-<mode>/ (see docs/loadtest.md).

LOADTEST_HOST ?= http://127.0.0.1:8000
LOADTEST_RUN_TIME ?= 60s
LOADTEST_CLASSES ?= MixedUser
# The gate: p95 over all requests in ms (off: none), per-endpoint bounds as ENDPOINT=MS, error rate.
LOADTEST_SLO_P95_MS ?= 1000
LOADTEST_SLO ?=
LOADTEST_MAX_ERROR_RATE ?= 0
LOADTEST_STEP_USERS ?= 1,2,4
LOADTEST_STEP_SECONDS ?= 20
LOADTEST_ARGS ?=

LOADTEST_GATE = --slo-p95-ms $(LOADTEST_SLO_P95_MS) --max-error-rate $(LOADTEST_MAX_ERROR_RATE) \
	$(foreach bound,$(LOADTEST_SLO),--slo $(bound))

.PHONY: loadtest loadtest-step

loadtest: install ## Locust at concurrency 1 against LOADTEST_HOST (default the local `make demo` API); fails on a missed SLO
	$(PY) loadtest/run.py --host $(LOADTEST_HOST) --users 1 --run-time $(LOADTEST_RUN_TIME) \
		--classes $(LOADTEST_CLASSES) $(LOADTEST_GATE) $(LOADTEST_ARGS)

loadtest-step: install ## Locust step load 1 -> 2 -> 4 users against LOADTEST_HOST: shows queueing at concurrency 1
	$(PY) loadtest/run.py --mode step --host $(LOADTEST_HOST) --step-users $(LOADTEST_STEP_USERS) \
		--step-seconds $(LOADTEST_STEP_SECONDS) --classes $(LOADTEST_CLASSES) --slo-p95-ms off \
		--max-error-rate $(LOADTEST_MAX_ERROR_RATE) $(LOADTEST_ARGS)
