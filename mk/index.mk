# Catalogs and the Annoy index bundle (docs/index.md). Override the folders and knobs below, e.g.
# `make index INDEX_BACKEND=torchserve INDEX_URL=http://127.0.0.1:8080 INDEX_TREES=100`.

CATALOG_DIR ?= $(DATA)/catalog
CATALOG_COUNT ?= 360
CATALOG_SEED ?= 0
CATALOG_ARGS ?=
INDEX_DIR ?= $(DATA)/index
INDEX_TREES ?= 50
INDEX_BATCH_SIZE ?= 32
INDEX_BACKEND ?= local
INDEX_URL ?= http://127.0.0.1:8080
INDEX_ARGS ?=
BENCH_INDEX_ARGS ?=

.PHONY: catalog index bench-index

catalog: install ## Draw the sample catalog into data/catalog (CATALOG_COUNT, CATALOG_SEED; CATALOG_ARGS=--force replaces one)
	$(PY) -m fashion_clip.catalog.sample $(CATALOG_DIR) --count $(CATALOG_COUNT) --seed $(CATALOG_SEED) $(CATALOG_ARGS)

index: install ## Build the index bundle data/index from data/catalog (drawn first if absent) with MODEL_DIR or INDEX_BACKEND/INDEX_URL
	@test -f $(CATALOG_DIR)/catalog.csv || test -f $(CATALOG_DIR)/catalog.jsonl || \
		$(MAKE) --no-print-directory catalog
	$(PY) -m fashion_clip.index.build $(CATALOG_DIR) --out $(INDEX_DIR) --trees $(INDEX_TREES) \
		--batch-size $(INDEX_BATCH_SIZE) --backend $(INDEX_BACKEND) --url $(INDEX_URL) \
		--model-dir $(MODEL_DIR) $(INDEX_ARGS)

bench-index: install ## Benchmark Annoy at 100k x 512: build time, size, query p50, recall@10 per tree count (JSON in loadtest/reports/)
	$(PY) loadtest/bench_index.py $(BENCH_INDEX_ARGS)
