"""POST /query: the answer as JSON, or with ``"stream": true`` as Server-Sent Events."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from llmops.errors import LLMOpsError
from llmops.server.schemas import ErrorResponse, QueryRequest, QueryResponse
from llmops.server.streaming import Piece, event_stream, first_piece, sse
from llmops.service import RAG, QueryKwargs
from llmops.types import GenerationOptions

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
        400: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
    summary="Answer a question from the indexed documents, with sources",
)
async def post_query(body: QueryRequest, request: Request) -> Response | QueryResponse:
    rag: RAG = request.app.state.rag
    question = _checked_question(body, rag)
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
    )
    user = experiment_user(request, body.user)
    if not body.stream:
        answer = await rag.aquery(question, request_id=request_id, user=user, **options)
        return QueryResponse.model_validate(answer, from_attributes=True)
    pieces = rag.astream(question, request_id=request_id, user=user, **options)
    first = await first_piece(pieces)

    def encode(item: Piece) -> str:
        if isinstance(item, str):
            return sse({"text": item}, "token")
        answer = QueryResponse.model_validate(item, from_attributes=True)
        return sse(answer.model_dump(mode="json"), "answer")

    def encode_error(exc: LLMOpsError) -> str:
        return sse({"detail": str(exc), "request_id": request_id}, "error")

    return event_stream(first, pieces, encode, encode_error)


def _checked_question(body: QueryRequest, rag: RAG) -> str:
    limits = rag.config.server
    question = body.question.strip()
    if not question:
        raise HTTPException(422, "question is empty")
    if len(question) > limits.max_question_chars:
        raise HTTPException(
            422, f"question is {len(question)} characters; the limit is {limits.max_question_chars}"
        )
    if body.top_k is not None and body.top_k > limits.max_top_k:
        raise HTTPException(422, f"top_k {body.top_k} is over the limit of {limits.max_top_k}")
    return question


def experiment_user(request: Request, user: str | None) -> str | None:
    """The id that keeps a user on one experiment variant: the configured header, else the
    request's ``user`` field."""
    rag: RAG = request.app.state.rag
    experiment = rag.config.experiment
    header = request.headers.get(experiment.key) if experiment is not None else None
    return header or user
