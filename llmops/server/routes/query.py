"""POST /query."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from llmops.server.schemas import ErrorResponse, QueryRequest, QueryResponse
from llmops.service import RAG

router = APIRouter(tags=["query"])


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Answer a question from the indexed documents, with sources",
)
async def post_query(body: QueryRequest, request: Request) -> QueryResponse:
    rag: RAG = request.app.state.rag
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
    answer = await rag.aquery(
        question,
        top_k=body.top_k,
        filters=body.filters,
        score_threshold=body.score_threshold,
        mmr=body.mmr,
        request_id=request.state.request_id,
    )
    return QueryResponse.model_validate(answer, from_attributes=True)
