"""What routes get from the app: its settings, embedder client, index holder and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fashion_clip.clients.base import EmbedderClient
from recommender.config import RecommenderSettings
from recommender.index import IndexHolder
from recommender.metrics import Metrics


def _settings(request: Request) -> RecommenderSettings:
    return request.app.state.settings


def _client(request: Request) -> EmbedderClient:
    return request.app.state.client


def _holder(request: Request) -> IndexHolder:
    return request.app.state.holder


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[RecommenderSettings, Depends(_settings)]
ClientDep = Annotated[EmbedderClient, Depends(_client)]
HolderDep = Annotated[IndexHolder, Depends(_holder)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
