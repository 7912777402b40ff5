"""The JSON shapes of the HTTP API (they become the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from clamp3.index.filters import MAX_WHERE_CHARS
from clamp3.serve.catalog import MAX_RESULTS

Modality = Literal["text", "symbolic", "audio"]
MAX_QUERY_CHARS = 2000
ItemId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="an item id from a search result")]
UploadId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="the upload_id of a file search")]
PageSize = Annotated[int, Field(ge=1, le=100, description="results per page")]
WHERE_HELP = (
    'a metadata filter, e.g. modality == "audio" and year >= 1950 and composer in ["Bach", "Händel"] '
    "(columns: see /api/facets; and, or, not, ==, !=, <, <=, >, >=, in, not in, contains)"
)
Offset = Annotated[int, Field(ge=0, lt=MAX_RESULTS, description="results to skip (pagination)")]


class SearchRequest(BaseModel):
    """A text query in any language. Strict: ``k: "5"`` or ``k: true`` is refused, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)
    q: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the query text, any language")
    k: PageSize = 10
    offset: Offset = 0
    modality: Modality | None = Field(default=None, description="only results of this modality")
    where: str | None = Field(default=None, max_length=MAX_WHERE_CHARS, description=WHERE_HELP)


class Result(BaseModel):
    id: str
    rank: int = Field(description="1-based")
    score: float = Field(description="cosine similarity in [-1, 1]")
    modality: str | None
    path: str = Field(description="relative to the media root")
    kind: str = Field(description="audio, score, midi, text, features, image or other")
    file_url: str
    render_url: str | None = Field(description="SVG of the score or piano roll, for scores and MIDI")
    similar_url: str


class SearchResponse(BaseModel):
    query: dict[str, str | None]
    results: list[Result]
    total: int = Field(description=f"results available (at most {MAX_RESULTS})")
    offset: int
    k: int
    upload_id: str | None = Field(default=None, description="for further pages of a file search")


class Item(BaseModel):
    id: str
    key: str
    path: str
    name: str
    modality: str | None
    kind: str
    size_bytes: int | None
    available: bool = Field(description="false when the file is missing or refused")
    problem: str | None
    text: str | None = Field(description="the start of a text item")
    metadata: dict[str, str | int | float | bool | list[str] | None] = Field(
        default_factory=dict, description="the catalogue columns of the item (see /api/facets)"
    )
    file_url: str
    render_url: str | None
    similar_url: str


class Health(BaseModel):
    status: str
    items: int
    modalities: dict[str, int]
    model: str | None
    dimension: int
    index_kind: str
    index_backend: str = Field(description="faiss or milvus")
    loaded_at: float
    text_search: bool
    max_upload_bytes: int
    max_audio_seconds: float = Field(description="longest recording accepted as a query")


class FacetValue(BaseModel):
    value: str | bool
    count: int


class Facet(BaseModel):
    type: str = Field(description="str, int, float, bool or list")
    values: list[FacetValue] = Field(description="most frequent values (text, list and bool columns)")
    more: bool = Field(description="more values exist than are listed")
    min: float | None = Field(description="number columns: smallest value")
    max: float | None


class Facets(BaseModel):
    columns: dict[str, Facet]


class AdminResult(BaseModel):
    items_before: int
    items: int
    added: int = Field(description="items whose ids the reloaded index has and the previous had not")
    removed: int = Field(description="items of the previous index that the reloaded one no longer has")


class Error(BaseModel):
    error: str = Field(description="a stable code: not_found, too_large, unsupported_type, ...")
    message: str
    request_id: str | None
    details: list[dict] | None = None
