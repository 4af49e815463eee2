"""Fine-tuning a sentence-transformers embedder on labelled (question, relevant passage) pairs.

sentence-transformers' own trainer (on transformers' ``Trainer``) with its
``MultipleNegativesRankingLoss``: each question is pulled towards its passage and pushed away
from the other passages of its batch, so no negatives need labelling; a batch never holds one
passage twice (``no_duplicates``), which would make a positive its own negative. The result is
a model folder that ``embedder: {type: sentence_transformers, model: FOLDER}`` loads, on torch
or exported to ONNX like any other.

The defaults are the library's usual ones for this loss (batch 32, learning rate 2e-5, 10 %
warm-up) with 3 epochs: on SciFact's 809 training questions that took all-MiniLM-L6-v2 from
0.645 to 0.686 dense nDCG@10 on the 300 test questions (1 epoch: 0.664); see
docs/retrieval.md, "Tuning from labels".
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmops.deps import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedderTraining:
    """How to fine-tune: ``epochs`` over the pairs, batches of ``batch_size`` pairs."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    seed: int = 0


def fine_tune(
    model: str,
    pairs: Sequence[tuple[str, str]],
    out: Path,
    training: EmbedderTraining = EmbedderTraining(),
    max_seq_length: int | None = None,
) -> Path:
    """Train a copy of the sentence-transformers ``model`` (a folder) on ``(question,
    passage)`` ``pairs`` and save it in ``out``; returns ``out``. The original is untouched."""
    if len(pairs) < 2:
        raise ValueError(
            f"fine-tuning the embedder needs at least 2 labelled (question, passage) pairs, "
            f"got {len(pairs)}: each batch's other passages are the negatives"
        )
    st = require("sentence_transformers", "rag")
    losses = require("sentence_transformers.losses", "rag")
    datasets = require("datasets", "rag")
    encoder = st.SentenceTransformer(model, device="cpu")
    if max_seq_length:
        encoder.max_seq_length = max_seq_length
    batch = min(training.batch_size, len(pairs))
    steps = training.epochs * -(-len(pairs) // batch)
    arguments = st.SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=training.epochs,
        per_device_train_batch_size=batch,
        learning_rate=training.learning_rate,
        warmup_steps=max(1, round(training.warmup_ratio * steps)),
        seed=training.seed,
        data_seed=training.seed,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        batch_sampler="no_duplicates",
        use_cpu=True,
        disable_tqdm=True,
    )
    data = datasets.Dataset.from_dict(
        {"question": [q for q, _ in pairs], "passage": [p for _, p in pairs]}
    )
    trainer = st.SentenceTransformerTrainer(
        model=encoder,
        args=arguments,
        train_dataset=data,
        loss=losses.MultipleNegativesRankingLoss(encoder),
    )
    log.info("fine-tuning %s on %d pairs: %d steps", model, len(pairs), steps)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its summary on stdout
        trainer.train()
    encoder.save(str(out))
    return out
