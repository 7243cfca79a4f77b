# The local demo and the UI on its own. scripts/demo.py does the work; DEMO_* variables override its
# ports and folders (see DemoSettings there), e.g. `DEMO_UI_PORT=8600 make demo`.

.PHONY: demo ui

UI_PORT ?= 8501

demo: install ## Run model server, API and UI on 127.0.0.1 (installs the model, catalog, index first); Ctrl-C stops all
	DEMO_DATA_DIR="$${DEMO_DATA_DIR:-$(DATA)}" DEMO_MODEL_DIR="$${DEMO_MODEL_DIR:-$(MODEL_DIR)}" \
	DEMO_MODEL_STORE="$${DEMO_MODEL_STORE:-$(MODEL_STORE)}" $(PY) scripts/demo.py

ui: install ## Run only the Streamlit UI on 127.0.0.1:8501 (UI_PORT=...) against FRONTEND_API_URL (default http://127.0.0.1:8000)
	$(PY) -m streamlit run frontend/app.py --server.headless=true --server.address=127.0.0.1 \
		--server.port=$(UI_PORT) --browser.gatherUsageStats=false --client.toolbarMode=viewer
