"""POST /query: the answer as JSON, or with ``"stream": true`` as Server-Sent Events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from llmops.errors import LLMOpsError
from llmops.server.auth import charge_tokens
from llmops.server.errors import documented
from llmops.server.schemas import QueryRequest, QueryResponse
from llmops.server.streaming import Piece, event_stream, first_piece, sse
from llmops.service import RAG, QueryKwargs
from llmops.types import GenerationOptions

MAX_USER_CHARS = 200

router = APIRouter(tags=["query"])

STREAM_DOC = (
    'With "stream": true the reply is text/event-stream: `event: token` events with '
    '`{"text": ...}` as the answer is generated, then one `event: answer` with the whole '
    "response (sources, usage, generator). A failure after the first token ends the stream "
    'with `event: error` and `{"detail", "request_id"}`.'
)


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC},
        **documented(400, 413, 503),
    },
    summary="Answer a question from the indexed documents, with sources",
)
async def post_query(body: QueryRequest, request: Request) -> Response | QueryResponse:
    rag: RAG = request.app.state.rag
    question = body.question
    request_id: str = request.state.request_id
    options = QueryKwargs(
        top_k=body.top_k,
        filters=body.filters,
        score_threshold=body.score_threshold,
        mmr=body.mmr,
        mode=body.mode,
        fusion=body.fusion,
        rerank=body.rerank,
        generation=GenerationOptions(
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            adapter=body.adapter,
        ),
        correlation_id=request.state.correlation_id,
    )
    user = experiment_user(request, body.user)
    if not body.stream:
        answer = await rag.aquery(question, request_id=request_id, user=user, **options)
        charge_tokens(request, answer.usage)
        return QueryResponse.model_validate(answer, from_attributes=True)
    pieces = rag.astream(question, request_id=request_id, user=user, **options)
    first = await first_piece(pieces)

    def encode(item: Piece) -> str:
        if isinstance(item, str):
            return sse({"text": item}, "token")
        charge_tokens(request, item.usage)
        answer = QueryResponse.model_validate(item, from_attributes=True)
        return sse(answer.model_dump(mode="json"), "answer")

    def encode_error(exc: LLMOpsError) -> str:
        return sse({"detail": str(exc), "request_id": request_id}, "error")

    return event_stream(first, pieces, encode, encode_error)


def experiment_user(request: Request, user: str | None) -> str | None:
    """The id that keeps a user on one experiment variant: the configured header, else the
    request's ``user`` field."""
    rag: RAG = request.app.state.rag
    experiment = rag.config.experiment
    header = request.headers.get(experiment.key) if experiment is not None else None
    return (header or user or "")[:MAX_USER_CHARS] or None
