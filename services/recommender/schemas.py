"""Request and response bodies of the API (docs/contracts.md, section API)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fashion_clip.clients.base import ModelInfo


def image_url(item_id: str) -> str:
    return f"/items/{item_id}/image"


class ErrorBody(BaseModel):
    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["No item with id 'x'."])


class ItemResult(BaseModel):
    id: str
    title: str | None = None
    category: str
    color: str | None = None
    price: float | None = None
    score: float = Field(description="cosine similarity to the query, in [-1, 1]")
    image_url: str

    @classmethod
    def from_hit(cls, item: dict, score: float) -> ItemResult:
        return cls(
            id=item["id"],
            title=item.get("title"),
            category=item["category"],
            color=item.get("color"),
            price=item.get("price"),
            score=score,
            image_url=image_url(item["id"]),
        )


class Results(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    items: list[ItemResult]
    k: int = Field(description="how many items were asked for; fewer come back when fewer exist")
    model: str = Field(description="model name of the embedder that made the vectors")
    untrained: bool = Field(description="true when the weights are untrained and the scores meaningless")


class Item(BaseModel):
    """A catalog item as stored in the index, with the URL of its image instead of the bundle path."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str | None = None
    category: str
    color: str | None = None
    price: float | None = None
    image_url: str

    @classmethod
    def from_record(cls, record: dict) -> Item:
        fields = {key: value for key, value in record.items() if key != "image"}
        return cls(**fields, image_url=image_url(record["id"]))


class Prediction(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    dim: int
    model: str
    model_id: str
    untrained: bool
    embedding: list[float] = Field(description="the L2-normalised image embedding")


class Categories(BaseModel):
    categories: list[str]


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str = "ready"
    model_id: str
    dim: int
    items: int


class EmbedderView(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    backend: str
    model_name: str


class Info(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ready: bool
    reason: str | None = Field(description="why the API is not ready, when it is not")
    untrained: bool
    warning: str | None = Field(description="a plain-language warning when the weights are untrained")
    embedder: EmbedderView
    model: ModelInfo | None = Field(description="what the model side says it serves (null until it answers)")
    index: dict | None = Field(description="the index bundle's manifest, without the file checksums")


class ReloadRequest(BaseModel):
    index_dir: Path | None = Field(
        None, description="a bundle folder to load instead of RECOMMENDER_INDEX_DIR"
    )


class Reloaded(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str = "reloaded"
    index_dir: str
    model_id: str
    dim: int
    items: int
