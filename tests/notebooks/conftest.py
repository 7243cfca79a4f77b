"""Fixtures for the walkthrough notebook: a Jupyter kernel for this interpreter that needs no user
kernelspec, a real API to call, and a runner that executes the notebook with nbclient."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from procs import local_api_env, start_api

from fashion_clip.clients import EmbedderClient
from fashion_clip.index import build_annoy_index

KERNEL_NAME = "fashion-clip-tests"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"
# The index the notebook builds: the sample catalog (360 items, seed 0), 50 trees, default batches.
NOTEBOOK_TREES = 50


@pytest.fixture(scope="session")
def notebook_path() -> Path:
    return NOTEBOOK


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A kernelspec running this interpreter, in a private Jupyter path (a fresh venv has no user
    kernelspecs, and a user's `python3` spec may point at another Python). Runtime files, IPython's
    profile and Jupyter's config stay in the temporary folder too."""
    from ipykernel.kernelspec import install

    root = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL_NAME, prefix=str(root / "prefix"), display_name="fashion-clip (tests)")
    return {
        "JUPYTER_PATH": str(root / "prefix" / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "IPYTHONDIR": str(root / "ipython"),
    }


@pytest.fixture(scope="session")
def run_notebook(jupyter_env: dict[str, str]) -> Callable[..., nbformat.NotebookNode]:
    """Execute the committed notebook top to bottom in a new kernel with these environment variables
    (the kernel inherits them) and return the executed copy; a failing cell raises CellExecutionError."""

    def run(env: dict[str, str], drop: tuple[str, ...] = ()) -> nbformat.NotebookNode:
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        with pytest.MonkeyPatch.context() as patch:
            # Importing streamlit (the UI tests do, in this process) sets MPLBACKEND=Agg, which the
            # kernel would inherit and then show no figures.
            for name in ("MPLBACKEND", *drop):
                patch.delenv(name, raising=False)
            for name, value in {**jupyter_env, **env}.items():
                patch.setenv(name, value)
            client = NotebookClient(
                notebook,
                kernel_name=KERNEL_NAME,
                timeout=600,
                startup_timeout=120,
                # The kernel's working directory is the notebook's folder, as in Jupyter.
                resources={"metadata": {"path": str(NOTEBOOK.parent)}},
            )
            client.execute()
        return notebook

    return run


@pytest.fixture(scope="module")
def notebook_index(
    sample_catalog: Path, tiny_client: EmbedderClient, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The index the notebook builds for itself, built here by the same builder with the same catalog,
    model, trees and batches, so that the API serving it can be compared with the notebook by id."""
    dest = tmp_path_factory.mktemp("notebook-api-index") / "index"
    build_annoy_index(sample_catalog, dest, tiny_client, trees=NOTEBOOK_TREES, progress=False)
    return dest


@pytest.fixture(scope="module")
def api_url(
    tmp_path_factory: pytest.TempPathFactory, notebook_index: Path, tiny_model: Path
) -> Iterator[str]:
    """The real API (`python -m recommender` under uvicorn) on a loopback port, tiny model in process:
    fp32 and torch's default threads, as the notebook computes, so query vectors agree exactly."""
    env = local_api_env(notebook_index, tiny_model)
    server, url = start_api(env, tmp_path_factory.mktemp("notebook-api") / "api.log", timeout=120)
    with server:
        yield url
