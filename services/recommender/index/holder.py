"""The serving index bundle, swapped without a restart.

One reference, `IndexHolder._current`, points at an immutable `Snapshot` (bundle + the model it was
checked against). A request takes a lease on the snapshot it starts with and uses only that one, so
a swap never changes an index under a running query; the old bundle is closed (Annoy unmapped) when
its last lease ends. A new bundle is loaded and checked against the model completely before the
single assignment that swaps it in; if anything is wrong with it, the old one keeps serving.

All lease and swap bookkeeping runs on the event loop thread, so it needs no locks; only the
blocking work (reading and hashing the bundle, Annoy queries) goes to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from fashion_clip.clients.base import EmbedderClient, ModelInfo
from fashion_clip.errors import FashionClipError
from fashion_clip.index.bundle import IndexBundle
from recommender.errors import IndexRejected, NotReady
from recommender.metrics import Metrics

logger = logging.getLogger("recommender")

BundleLoader = Callable[[Path], IndexBundle]

# While the model side is unreachable or disagrees at start-up, ask again with this backoff.
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0


@dataclass(eq=False)
class Snapshot:
    """What one request sees from start to end: a bundle and the model it agrees with."""

    bundle: IndexBundle
    model: ModelInfo
    loaded_at: float = field(default_factory=time.time)
    leases: int = 0
    retired: bool = False

    @property
    def path(self) -> Path:
        return self.bundle.path


def mismatch(bundle: IndexBundle, model: ModelInfo) -> str | None:
    """Why this bundle's vectors cannot be compared with this model's, or None when they can."""
    built_with = bundle.model.get("model_id")
    if bundle.dim != model.dim:
        return (
            f"The index at {bundle.path} holds {bundle.dim}-dimensional vectors (model {built_with}) but the "
            f"model side serves {model.model_id} with {model.dim} dimensions; rebuild the index with this model."
        )
    if built_with != model.model_id:
        return (
            f"The index at {bundle.path} was built with model {built_with} but the model side serves "
            f"{model.model_id}; its vectors are not comparable. Rebuild the index or serve the matching model."
        )
    return None


class IndexHolder:
    def __init__(
        self,
        index_dir: Path,
        client: EmbedderClient,
        metrics: Metrics,
        loader: BundleLoader = IndexBundle.load,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.client = client
        self.metrics = metrics
        self._loader = loader
        self._current: Snapshot | None = None
        # Loaded at start-up, waiting for the model side to confirm it.
        self._pending: IndexBundle | None = None
        self.model: ModelInfo | None = None
        self.reason = "Starting: the index bundle is not loaded yet."
        self._lock = asyncio.Lock()  # one load-and-swap at a time (start-up check, reloads)
        self._connect_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- state -------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> Snapshot | None:
        return self._current

    @property
    def bundle(self) -> IndexBundle | None:
        """The serving bundle, or the one waiting for the model (for /info); no lease: metadata only."""
        return self._current.bundle if self._current else self._pending

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Snapshot]:
        """The serving snapshot, kept open until the request is done with it."""
        snapshot = self._current
        if snapshot is None:
            raise NotReady(self.reason)
        snapshot.leases += 1
        try:
            yield snapshot
        finally:
            snapshot.leases -= 1
            if snapshot.retired and snapshot.leases == 0:
                self._close(snapshot.bundle)

    def _set_reason(self, reason: str) -> None:
        if reason != self.reason:
            logger.warning("not ready: %s", reason)
        self.reason = reason

    def _swap(self, bundle: IndexBundle, model: ModelInfo) -> None:
        old = self._current
        self._current = Snapshot(bundle, model)  # the one assignment requests observe
        self.model = model
        self.reason = ""
        self.metrics.ready.set(1)
        self.metrics.index_items.set(len(bundle))
        if old is not None:
            old.retired = True
            if old.leases == 0:
                self._close(old.bundle)

    @staticmethod
    def _close(bundle: IndexBundle) -> None:
        try:
            bundle.close()
        except Exception:  # closing must never fail a request that merely released its lease
            logger.exception("closing the index bundle at %s failed", bundle.path)

    # --- start-up ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the bundle now (a broken one stops start-up), then confirm it against the model in
        the background, retrying while the model side is unreachable or disagrees."""
        path = self.index_dir.resolve()
        self._pending = await anyio.to_thread.run_sync(self._loader, path)
        self._set_reason(f"Waiting for the model side ({self.client.backend}) to confirm the index.")
        self._connect_task = asyncio.create_task(self._connect(), name="confirm-index")

    async def _connect(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            async with self._lock:
                if self._current is not None or self._pending is None:
                    return  # a reload got there first
                try:
                    model = await self.client.info()
                except FashionClipError as exc:
                    self._set_reason(f"The model side is not answering: {exc.message}")
                except Exception as exc:
                    logger.exception("asking the model side who it is failed")
                    self._set_reason(f"Asking the model side who it is failed: {exc!r}")
                else:
                    self.model = model
                    problem = mismatch(self._pending, model)
                    if problem is None:
                        pending, self._pending = self._pending, None
                        self._swap(pending, model)
                        logger.info(
                            "ready: index %s (%d items) agrees with %s (%s)",
                            pending.path,
                            len(pending),
                            model.model_id,
                            self.client.backend,
                        )
                        return
                    if problem != self.reason:
                        logger.error("refusing to become ready: %s", problem)
                    self.reason = problem
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    # --- reload ------------------------------------------------------------------------------------

    async def reload(self, index_dir: Path | None = None) -> Snapshot:
        """Load a bundle (default: the configured folder, symlinks resolved now), check it against
        the model, and swap it in; raise `IndexRejected` and keep the old one if anything is wrong."""
        path = Path(index_dir or self.index_dir).resolve()
        async with self._lock:
            try:
                bundle = await anyio.to_thread.run_sync(self._loader, path)
            except Exception as exc:
                self.metrics.reloads.labels("refused").inc()
                message = exc.message if isinstance(exc, FashionClipError) else str(exc)
                logger.error("reload refused: %s", message)
                raise IndexRejected(
                    f"The index bundle at {path} was refused and the current one keeps serving: {message}"
                ) from exc
            try:
                model = await self.client.info()
                problem = mismatch(bundle, model)
                if problem is not None:
                    self.metrics.reloads.labels("refused").inc()
                    logger.error("reload refused: %s", problem)
                    raise IndexRejected(f"{problem} The current index keeps serving.")
            except BaseException as exc:
                if not isinstance(exc, IndexRejected):
                    self.metrics.reloads.labels("failed").inc()
                self._close(bundle)
                raise
            if self._pending is not None:  # start-up was still waiting on a bundle we now replace
                self._close(self._pending)
                self._pending = None
            self._swap(bundle, model)
            self.metrics.reloads.labels("swapped").inc()
            logger.info("reloaded: index %s (%d items, model %s)", path, len(bundle), model.model_id)
            return self._current  # type: ignore[return-value]

    def reload_in_background(self, reason: str) -> None:
        """For SIGHUP: reload, log the outcome, never raise into the signal handler."""
        if self._connect_task is None:
            # Start-up is still reading RECOMMENDER_INDEX_DIR: it will serve what is there now.
            logger.info("%s ignored: the index is still being loaded at start-up", reason)
            return

        async def run() -> None:
            try:
                await self.reload()
            except FashionClipError as exc:
                logger.error("%s reload failed: %s", reason, exc.message)
            except Exception:
                logger.exception("%s reload failed", reason)

        logger.info("%s: reloading the index from %s", reason, self.index_dir)
        task = asyncio.create_task(run(), name="reload-index")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- shutdown ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        tasks = [t for t in [self._connect_task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bundle in (self._pending, self._current.bundle if self._current else None):
            if bundle is not None:
                self._close(bundle)
        self._pending = None
        self._current = None
        self.metrics.ready.set(0)
