"""The shape of an app config file. Component sections hold a registry key (``type``) and
that component's own settings, which ``llmops.build`` validates against the component's model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from llmops.config.auth import AuthConfig, CorsConfig
from llmops.config.component import AppName, ComponentSpec, Strict
from llmops.config.evaluation import EvaluationConfig
from llmops.config.experiment import ExperimentConfig
from llmops.config.monitoring import MonitoringConfig
from llmops.config.ray import IngestConfig
from llmops.confine import Escape, relative_part

__all__ = ["AppConfig", "ComponentSpec", "Strict"]


def _inside_the_source(pattern: str) -> str:
    """A glob stays inside its source folder: a ``..`` step would leave it."""
    try:
        relative_part(pattern.lstrip("/"))
    except Escape as exc:
        raise ValueError(
            f"glob '{pattern}' leaves the source folder ({exc.reason}): globs match paths "
            "inside sources[].path; point path at the folder you mean instead"
        ) from None
    return pattern


Glob = Annotated[str, AfterValidator(_inside_the_source)]


class SourceConfig(Strict):
    """A folder (or single file) of documents to index."""

    path: str = Field(description="Folder or file, relative to the config file.")
    include: list[Glob] = Field(default_factory=lambda: ["**/*"], description="Glob patterns.")
    exclude: list[Glob] = Field(default_factory=list, description="Glob patterns to skip.")
    max_file_mb: float = Field(
        100.0,
        gt=0,
        description="Files larger than this (megabytes) are skipped unread and reported in the "
        "ingestion report.",
    )
    loaders: dict[str, ComponentSpec] = Field(
        default_factory=dict,
        description="Per-extension loader overrides, e.g. "
        "{'.jsonl': {type: json, text_field: body}}.",
    )


class MMRConfig(Strict):
    enabled: bool = False
    fetch_k: int = Field(20, ge=1, le=1000)
    lambda_: float = Field(0.5, ge=0.0, le=1.0, alias="lambda")


SearchMode = Literal["hybrid", "dense", "sparse"]
Fusion = Literal["adaptive", "rrf", "weighted"]


class RetrievalConfig(Strict):
    top_k: int = Field(4, ge=1, le=100)
    mode: SearchMode = Field(
        "hybrid",
        description="hybrid: dense vectors and BM25 keywords fused; dense or sparse: one of them.",
    )
    fusion: Fusion = Field(
        "adaptive",
        description="How hybrid search merges its two rankings: adaptive (normalised scores, "
        "weighted per question by how clearly each ranking's best hits stand out), rrf "
        "(reciprocal rank) or weighted (normalised scores, weighted by dense_weight). "
        "`llmops eval retrieval --tune` picks one from labelled queries.",
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="The k of reciprocal-rank fusion.")
    dense_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Weighted fusion: share of the dense score (BM25 gets the rest). Adaptive "
        "fusion: the dense prior that each question's evidence moves (0.5: none).",
    )
    candidates: int = Field(
        100, ge=1, le=1000, description="How many hits each path contributes before fusion."
    )
    score_threshold: float = Field(
        0.0,
        description="Drop hits scoring below: cosine similarity (dense), BM25 score (sparse), "
        "fused score (hybrid: 0..1 adaptive or weighted) or the reranker's score.",
    )
    mmr: MMRConfig = Field(default_factory=lambda: MMRConfig())
    max_context_tokens: int | None = Field(
        None,
        ge=16,
        description="Token budget for the passages put in the prompt: the least relevant are "
        "dropped until the rest fit (counted with the embedder's tokenizer).",
    )
    history_turns: int = Field(
        2,
        ge=0,
        le=20,
        description="In a conversation, how many earlier user turns join the search query, "
        "so follow-ups like 'and on Windows?' find the right passages.",
    )


SHUTDOWN_TIMEOUT = Field(
    25,
    ge=0,
    le=3600,
    description="On SIGTERM or Ctrl-C, the longest wait for requests in flight to finish "
    "(new connections are refused meanwhile); then they are cancelled and the app closes. "
    "Keep it below the orchestrator's grace period (Kubernetes: 30 s).",
)
"""``server.shutdown_timeout_s`` and ``serving.shutdown_timeout_s``."""


class ServerConfig(Strict):
    """Where ``llmops up`` listens, and the limits every request is held to, on every face
    (HTTP ``/query`` and ``/v1``, the CLI, the Python API)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_question_chars: int = Field(
        4000, ge=1, le=1_000_000, description="Longest question, in characters."
    )
    max_history_chars: int = Field(
        16000,
        ge=0,
        le=100_000_000,
        description="Longest earlier conversation (all turns), in characters.",
    )
    max_messages: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Most messages in one conversation (the question and the turns before it).",
    )
    max_top_k: int = Field(50, ge=1, le=10_000, description="Most chunks a request may ask for.")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        description="One deadline per request, across the backend's retries and every "
        "fallback: when it passes, remote backends are not tried again and in-process "
        "fallbacks (extractive) still answer; else 503.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes of `llmops up`, each with its own copy of the models; "
        "more than one needs the index built before serving (POST /ingest is refused).",
    )
    shutdown_timeout_s: int = SHUTDOWN_TIMEOUT
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="API keys, scopes and per-key rate limits."
    )
    cors: CorsConfig = Field(
        default_factory=lambda: CorsConfig(), description="Browser origins allowed (CORS)."
    )


class AppConfig(Strict):
    """One RAG app: where documents come from, how they are indexed, how questions are answered."""

    name: AppName = Field("llmops", description="3-63 letters, digits, _ or -; names collections.")
    data_dir: str = Field(".llmops", description="Index and records; relative to the config file.")
    sources: list[SourceConfig] = Field(min_length=1)
    chunker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="recursive"))
    embedder: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(type="sentence_transformers")
    )
    store: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="chroma"))
    sparse: ComponentSpec | None = Field(
        default_factory=lambda: ComponentSpec(type="bm25"),
        description="Keyword index kept beside the vectors (null: none, dense search only).",
    )
    reranker: ComponentSpec | None = Field(
        None, description="Cross-encoder that re-scores the fused candidates (none by default)."
    )
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="extractive"))
    fallbacks: list[ComponentSpec] = Field(
        default_factory=list,
        description="Generators that answer, in order, when the generator fails or times out.",
    )
    prompt: str = Field("answer.v1", description="Template name in prompts/ (answer.v1.j2).")
    prompts_dir: str | None = Field(
        None, description="Folder of templates; default: the nearest prompts/ above the config."
    )
    retrieval: RetrievalConfig = Field(default_factory=lambda: RetrievalConfig())
    ingest: IngestConfig = Field(
        default_factory=lambda: IngestConfig(),
        description="Where ingestion loads, chunks and embeds: in this process or on Ray.",
    )
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    monitoring: MonitoringConfig = Field(default_factory=lambda: MonitoringConfig())
    evaluation: EvaluationConfig = Field(
        default_factory=lambda: EvaluationConfig(),
        description="Where the app finds its eval runs (GET /evals, the console).",
    )
    experiment: ExperimentConfig | None = Field(
        None, description="Variants of the app and how traffic is split among them."
    )
