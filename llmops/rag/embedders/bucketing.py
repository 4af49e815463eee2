"""Length bucketing: batches cut from texts sorted by token count, padded only to their own
longest member, so a model call spends almost nothing on padding.

sentence-transformers (the torch backend) sorts by characters, which only approximates tokens:
code and prose of one length differ by half in tokens. Sorting the token ids themselves leaves
a batch of 4 with the padding of neighbours in a sorted list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into ``lengths`` in batches of ``batch_size``, longest first."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padding tokens per real token when each batch is padded to its longest member."""
    real = sum(lengths)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    return (padded - real) / real if real else 0.0


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> np.ndarray:
    """``rows`` of token ids as one int64 matrix, padded with ``value`` to the longest row."""
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        start = width - len(row) if left else 0
        out[i, start : start + len(row)] = row
    return out


def pad_features(
    features: Mapping[str, Sequence[Sequence[int]]],
    picked: Sequence[int],
    pad_values: Mapping[str, int],
    left: bool = False,
) -> dict[str, np.ndarray]:
    """The rows ``picked`` of each tokenizer output (``input_ids``, ``attention_mask``, ...),
    padded together; names missing from ``pad_values`` pad with 0."""
    return {
        name: pad([rows[i] for i in picked], pad_values.get(name, 0), left)
        for name, rows in features.items()
    }
