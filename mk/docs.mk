# The walkthrough notebook and the checks of the docs (docs/architecture.md).
# `make notebook` executes notebooks/walkthrough.ipynb top to bottom with this venv's Python; the
# executed copy, the model, catalog, index and figures go to NOTEBOOK_OUT, never into the repository.
# Point it at a running API with FASHION_CLIP_API_URL (default http://127.0.0.1:8000, `make demo`);
# FASHION_CLIP_NOTEBOOK_MODEL=tiny skips the download of the real model.

NOTEBOOK_OUT ?= $(or $(TMPDIR),/tmp)/fashion-clip-notebook
NOTEBOOK_TIMEOUT ?= 1800
NOTEBOOK_KERNEL := fashion-clip

.PHONY: notebook docs-check

# The kernelspec is written into NOTEBOOK_OUT so that the notebook runs with this venv's Python even
# where a user's own `python3` kernelspec points at another interpreter.
notebook: install ## Execute notebooks/walkthrough.ipynb (real model online, tiny offline); executed copy and figures in NOTEBOOK_OUT
	@mkdir -p $(NOTEBOOK_OUT)
	$(PY) -m ipykernel install --prefix $(abspath $(NOTEBOOK_OUT))/jupyter --name $(NOTEBOOK_KERNEL) \
		--display-name "fashion-clip (.venv)" > /dev/null
	JUPYTER_PATH=$(abspath $(NOTEBOOK_OUT))/jupyter/share/jupyter \
	FASHION_CLIP_NOTEBOOK_DIR=$(abspath $(NOTEBOOK_OUT))/run \
		$(VENV)/bin/jupyter-execute --kernel_name=$(NOTEBOOK_KERNEL) --timeout=$(NOTEBOOK_TIMEOUT) \
		--output=$(abspath $(NOTEBOOK_OUT))/walkthrough notebooks/walkthrough.ipynb
	@echo "Executed notebook: $(abspath $(NOTEBOOK_OUT))/walkthrough.ipynb; figures in $(abspath $(NOTEBOOK_OUT))/run/figures"

docs-check: install ## Check that every command, script, console script and env name in the docs exists
	$(PY) -m pytest tests/docs -q $(PYTEST_ARGS)
