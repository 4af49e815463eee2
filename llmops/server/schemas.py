"""HTTP request and response bodies.

Request bodies are strict (``true`` is not 1, ``"yes"`` is not true, NaN and Infinity are
refused) and every input is bounded in the schema: strings by length, lists by items, objects
by keys, integers by range. Where the app's config sets a lower limit (``server:``), the field
names it under ``x-llmops-limit`` and the service checks it below the routes, the same for
every face (tests/server/test_request_limits.py walks the document and tries each one)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import JsonDict

from llmops.config.schema import Fusion, SearchMode
from llmops.rag import filters

MAX_TOP_K = 10_000
MAX_TOKENS = 1_000_000
MAX_TEXT_CHARS = 1_000_000
"""The longest question or message the schema accepts; ``server.max_question_chars`` and
``server.max_history_chars`` set the app's own (lower) limits."""
MAX_FILTER_KEYS = 64
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
"""Request bodies: unknown fields, coerced types and non-finite numbers are errors."""


def _integral(value: Any) -> Any:
    """``2.0`` is the integer 2, as JSON Schema has it; ``true`` and ``"2"`` stay invalid."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


AS_INTEGER = BeforeValidator(_integral)
"""Makes an ``int`` field a JSON integer. It goes after the field's bounds,
``Annotated[int, Field(ge=1, le=9), AS_INTEGER]``: before them, the document shows the bounds
as ``ge``/``le`` rather than ``minimum``/``maximum``."""
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), AS_INTEGER]
TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS), AS_INTEGER]


def config_limit(key: str) -> JsonDict:
    """The ``json_schema_extra`` of a field bounded by the app's config key ``key``."""
    return {"x-llmops-limit": key}


FILTERS_LIMIT = config_limit(
    f"filters: and/or nest {filters.MAX_DEPTH} levels at most, "
    f"{filters.MAX_CONDITIONS} comparisons at most"
)


class QueryRequest(BaseModel):
    model_config = STRICT
    question: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The question to answer.",
        json_schema_extra=config_limit("server.max_question_chars"),
    )
    top_k: TopK | None = Field(
        None,
        description="How many chunks to retrieve.",
        json_schema_extra=config_limit("server.max_top_k"),
    )
    filters: dict[str, Any] | None = Field(
        None,
        max_length=MAX_FILTER_KEYS,
        description="Metadata filter, e.g. {'source': 'guide/01-intro.md'} or "
        "{'page': {'gte': 2}}; operators eq ne in nin gt gte lt lte, and/or lists.",
        json_schema_extra=FILTERS_LIMIT,
    )
    score_threshold: float | None = Field(
        None,
        description="Drop hits scoring below: cosine (dense), BM25 (sparse), fused score "
        "(hybrid) or the reranker's score.",
    )
    mmr: bool | None = Field(None, description="Diversify results with MMR.")
    mode: SearchMode | None = Field(None, description="hybrid, dense or sparse (BM25).")
    fusion: Fusion | None = Field(None, description="Hybrid fusion: adaptive, weighted or rrf.")
    rerank: bool | None = Field(None, description="Rerank with the configured cross-encoder.")
    stream: bool = Field(False, description="Send the answer as Server-Sent Events.")
    temperature: float | None = Field(None, ge=0, le=2, description="Override the generator's.")
    max_tokens: TokenCount | None = Field(None, description="Override the generator's.")
    adapter: str | None = Field(
        None, max_length=200, description="LoRA adapter to answer with (hf_local)."
    )
    user: str | None = Field(
        None,
        max_length=200,
        description="A user or session id that keeps one experiment variant (or the header "
        "named by experiment.key).",
    )


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    citation: int
    document_id: str
    chunk_id: str
    source: str
    page: int | None
    heading: str | None
    score: float
    snippet: str
    cited: bool


class UsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    prompt_tokens: int
    completion_tokens: int


class QueryResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    answer: str
    sources: list[SourceOut]
    abstained: bool
    latency_ms: float
    request_id: str
    generator: str
    usage: UsageOut
    variant: str = Field(description="The experiment variant that served it ('default': none).")


class IngestRequest(BaseModel):
    model_config = STRICT
    full: bool = Field(False, description="Rebuild everything into a new collection.")


class IngestJob(BaseModel):
    job_id: str
    status: Literal["running", "succeeded", "failed"]
    full: bool
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
