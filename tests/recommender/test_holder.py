"""IndexHolder in process: leases keep a swapped-out bundle open until its last request is done;
a refused bundle changes nothing. The model side is the real tiny model in process."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashion_clip.clients import EmbedderClient, EmbedderSettings, make_client
from fashion_clip.index.bundle import IndexBundle
from recommender.errors import IndexRejected, NotReady
from recommender.index import IndexHolder
from recommender.metrics import Metrics

from .conftest import PER_CATEGORY


@pytest.fixture(scope="module")
def model_side(tiny_model: Path) -> Iterator[EmbedderClient]:
    client = make_client(EmbedderSettings(backend="local", model_dir=tiny_model, precision="fp32", threads=1))
    yield client
    asyncio.run(client.aclose())


class Recording:
    """Wraps IndexBundle.load to keep every bundle the holder opened, to check which got closed."""

    def __init__(self) -> None:
        self.loaded: list[IndexBundle] = []

    def __call__(self, path: Path) -> IndexBundle:
        bundle = IndexBundle.load(path)
        self.loaded.append(bundle)
        return bundle


def closed(bundle: IndexBundle) -> bool:
    try:
        bundle.vector(bundle.ids()[0])
    except Exception as exc:
        return "is closed" in str(exc)
    return False


async def until_ready(holder: IndexHolder) -> None:
    while not holder.ready:
        await asyncio.sleep(0.05)


def test_not_ready_before_start_and_leases_refused(model_side: EmbedderClient, index_bundle: Path) -> None:
    holder = IndexHolder(index_bundle, model_side, Metrics())

    async def scenario() -> None:
        with pytest.raises(NotReady, match="^Starting: the index bundle is not loaded yet.$"):
            async with holder.lease():
                pass

    asyncio.run(scenario())


def test_a_swapped_out_bundle_stays_open_until_its_last_lease_ends(
    model_side: EmbedderClient, index_bundle: Path, half_bundle: Path
) -> None:
    loader = Recording()
    metrics = Metrics()
    holder = IndexHolder(index_bundle, model_side, metrics, loader=loader)

    async def scenario() -> None:
        await holder.start()
        await until_ready(holder)
        first = loader.loaded[0]
        async with holder.lease() as old:
            snapshot = await holder.reload(half_bundle)  # swapped while `old` is in use
            assert holder.current is snapshot and snapshot.bundle is loader.loaded[1]
            assert len(snapshot.bundle) == 9 * PER_CATEGORY // 2
            assert old.bundle is first and not closed(first)
            hits = old.bundle.search(old.bundle.vector("bag-red-solid"), k=3)  # the old index still answers
            assert hits[0][0]["id"] == "bag-red-solid"
        assert closed(first)  # released by its last lease
        assert not closed(loader.loaded[1])
        await holder.aclose()
        assert closed(loader.loaded[1])

    asyncio.run(scenario())
    assert metrics.reloads.labels("swapped")._value.get() == 1


@pytest.mark.parametrize("variant", ["other_model_bundle", "other_dim_bundle", "corrupt", "missing"])
def test_a_refused_bundle_changes_nothing(
    model_side: EmbedderClient,
    index_bundle: Path,
    variant: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    if variant == "corrupt":
        path = tmp_path / "corrupt"
        shutil.copytree(index_bundle, path)
        with open(path / "items.jsonl", "a") as handle:
            handle.write("\n")
    elif variant == "missing":
        path = tmp_path / "missing"
    else:
        path = request.getfixturevalue(variant)
    loader = Recording()
    metrics = Metrics()
    holder = IndexHolder(index_bundle, model_side, metrics, loader=loader)

    async def scenario() -> None:
        await holder.start()
        await until_ready(holder)
        before = holder.current
        with pytest.raises(IndexRejected):
            await holder.reload(path)
        assert holder.current is before and not closed(before.bundle)
        for bundle in loader.loaded[1:]:  # a bundle that loaded but disagreed is not left open
            assert closed(bundle)
        await holder.aclose()

    asyncio.run(scenario())
    assert metrics.reloads.labels("refused")._value.get() == 1
    assert metrics.reloads.labels("swapped")._value.get() == 0
