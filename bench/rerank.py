"""Cost of reranking: CrossEncoder throughput for a BERT-base-sized model on this CPU.

    python bench/rerank.py [--size base|minilm] [--pairs 30] [--tokens 200] [--rounds 5]

No cross-encoder is bundled and nothing is downloaded, so the model is a *random* one built
from its config, with the bundled MiniLM's uncased word-piece tokenizer: ``base`` is BERT-base
sized (12 layers, hidden 768, like bge-reranker-base), ``minilm`` the size of
ms-marco-MiniLM-L-6-v2 (6 layers, hidden 384). Random weights cost exactly what trained ones
do; the figures say nothing about quality.

One round scores ``--pairs`` (query, passage) pairs of about ``--tokens`` tokens in one
``predict`` call, as one query's rerank does. Prints JSON: median and best ms per round and
pairs/s, and the load average (compare runs only on a quiet machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, emit, machine, median

QUERY = "how do I restore a backup of the catalogue"
SIZES: dict[str, dict[str, int]] = {
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072},
    "minilm": {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536},
}


def build_model(folder: Path, size: str) -> Path:
    """Random BERT sequence classifier (one logit) + the bundled uncased tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from llmops.rag.embedders.sentence_transformers import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), num_labels=1, **SIZES[size])
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def passages(tokenizer: Any, count: int, tokens: int) -> list[str]:
    """``count`` passages of about ``tokens`` tokens, cut from the user guide's text."""
    text = " ".join(p.read_text() for p in sorted((ROOT / "datasets" / "guide").rglob("*.md")))
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    width = tokens - 14  # room for the query and the [CLS]/[SEP] tokens
    starts = [(i * width) % max(1, len(ids) - width) for i in range(count)]
    return [tokenizer.decode(ids[s : s + width]) for s in starts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp), args.size)
        model = CrossEncoder(str(folder), device="cpu", local_files_only=True, max_length=512)
    pairs = [(QUERY, p) for p in passages(model.tokenizer, args.pairs, args.tokens)]
    encoded = model.tokenizer([q for q, _ in pairs], [p for _, p in pairs])
    lengths = [len(ids) for ids in encoded["input_ids"]]
    model.predict(pairs, batch_size=32, show_progress_bar=False)  # warm-up
    times = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        model.predict(pairs, batch_size=32, show_progress_bar=False)
        times.append(time.perf_counter() - started)
    seconds, best = median(times), min(times)
    emit(
        {
            "model": f"random BERT, one logit: {SIZES[args.size]}",
            "pairs": len(pairs),
            "tokens_per_pair": round(sum(lengths) / len(lengths)),
            "ms_per_round": round(seconds * 1000, 1),
            "pairs_per_s": round(len(pairs) / seconds, 1),
            # other processes on a shared machine only ever slow a round down
            "best_ms_per_round": round(best * 1000, 1),
            "best_pairs_per_s": round(len(pairs) / best, 1),
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0],
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
