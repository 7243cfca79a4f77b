# The model server (docs/model-server.md): install a model, serve it with TorchServe or KServe on
# 127.0.0.1, benchmark it. Ports and folders are variables, e.g. `make serve-model MODEL_PORT=9080`.

MODEL_PORT ?= 8080
MODEL_MANAGEMENT_PORT ?= 8081
MODEL_METRICS_PORT ?= 8082
KSERVE_PORT ?= 8080
MODEL_PRECISION ?= auto
MODEL_INSTALL_ARGS ?=
BENCH_MODEL_ARGS ?=

INSTALL_MODEL := $(PY) model-server/model_installer.py --model-dir $(MODEL_DIR) --model-store $(MODEL_STORE)

.PHONY: model model-tiny model-untrained serve-model serve-kserve bench-model

model: install ## Install pretrained ViT-B/32 (openai) into MODEL_DIR and MODEL_STORE/clip.mar; needs network
	$(INSTALL_MODEL) $(MODEL_INSTALL_ARGS)

model-tiny: install ## Install the tiny seeded CLIP (dim 64, a few MB) for offline demos and tests
	$(INSTALL_MODEL) --tiny $(MODEL_INSTALL_ARGS)

model-untrained: install ## Install real ViT-B/32 with seeded random weights (offline; results not meaningful)
	$(INSTALL_MODEL) --untrained $(MODEL_INSTALL_ARGS)

# TorchServe writes logs/ into its working directory: model-server/logs (ignored by git). The TS_*
# variables move the shipped config's 0.0.0.0 listeners to loopback.
serve-model: install ## Serve MODEL_STORE/clip.mar with TorchServe in the foreground on 127.0.0.1:MODEL_PORT (Ctrl-C stops)
	@test -f $(MODEL_STORE)/clip.mar || { echo "No $(MODEL_STORE)/clip.mar: run make model, model-tiny or model-untrained first." >&2; exit 1; }
	cd model-server && \
	TS_INFERENCE_ADDRESS=http://127.0.0.1:$(MODEL_PORT) \
	TS_MANAGEMENT_ADDRESS=http://127.0.0.1:$(MODEL_MANAGEMENT_PORT) \
	TS_METRICS_ADDRESS=http://127.0.0.1:$(MODEL_METRICS_PORT) \
	MODEL_SERVER_PRECISION=$(MODEL_PRECISION) \
	$(abspath $(VENV))/bin/torchserve --start --foreground --ncs \
		--ts-config $(abspath model-server/config.properties) --model-store $(abspath $(MODEL_STORE))

serve-kserve: install ## Serve MODEL_DIR with the KServe predictor on 127.0.0.1:KSERVE_PORT (v1 and v2 REST, no gRPC)
	@test -f $(MODEL_DIR)/manifest.json || { echo "No model in $(MODEL_DIR): run make model, model-tiny or model-untrained first." >&2; exit 1; }
	MODEL_SERVER_MODEL_DIR=$(abspath $(MODEL_DIR)) MODEL_SERVER_PRECISION=$(MODEL_PRECISION) \
		$(PY) model-server/kserve_predictor.py --http_host 127.0.0.1 --http_port $(KSERVE_PORT)

bench-model: install ## Time ViT-B/32 encodes (fp32/bf16/int8, 1-2 threads) against the GEMM rate and TorchServe; prints a table, writes JSON
	$(PY) loadtest/bench_model.py $(BENCH_MODEL_ARGS)
