# The recommender API (docs/api.md): FastAPI under uvicorn over an index bundle, with the model in
# process (`local`, needs MODEL_DIR) or behind a model server (`torchserve`, `kserve` at API_MODEL_URL).
# e.g. `make api`, or `make serve-model` in one shell and `make api API_BACKEND=torchserve` in another.

API_HOST ?= 127.0.0.1
API_PORT ?= 8000
API_INDEX_DIR ?= $(DATA)/index
API_BACKEND ?= local
API_MODEL_URL ?= http://127.0.0.1:8080
API_PRECISION ?= auto
# Set to 16+ characters to enable POST /admin/reload (`kill -HUP <pid>` reloads the bundle anyway).
API_ADMIN_TOKEN ?=

.PHONY: api

api: install ## Run the API on 127.0.0.1:8000 (API_PORT) over data/index (API_INDEX_DIR) with API_BACKEND local, torchserve or kserve
	@test -f $(API_INDEX_DIR)/manifest.json || { echo "No index bundle in $(API_INDEX_DIR): run make index first." >&2; exit 1; }
	RECOMMENDER_HOST=$(API_HOST) RECOMMENDER_PORT=$(API_PORT) RECOMMENDER_INDEX_DIR=$(API_INDEX_DIR) \
	RECOMMENDER_EMBEDDER__BACKEND=$(API_BACKEND) RECOMMENDER_EMBEDDER__URL=$(API_MODEL_URL) \
	RECOMMENDER_EMBEDDER__MODEL_DIR=$(MODEL_DIR) RECOMMENDER_EMBEDDER__PRECISION=$(API_PRECISION) \
	RECOMMENDER_ADMIN_TOKEN=$(API_ADMIN_TOKEN) \
		$(PY) -m recommender
