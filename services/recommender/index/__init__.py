"""The hot-swappable holder of the serving index bundle (see `holder`)."""

from recommender.index.holder import IndexHolder, Snapshot, mismatch

__all__ = ["IndexHolder", "Snapshot", "mismatch"]
