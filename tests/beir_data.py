"""A tiny BEIR folder written by the tests: eight documents on unrelated topics and four queries
whose words occur only in the documents judged relevant to them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CORPUS = [
    {
        "_id": "volc-1",
        "title": "Volcanoes",
        "text": "A volcano eruption pours lava and ash; magma climbs through the volcano vent.",
    },
    {
        "_id": "hike-2",
        "title": "Mountain hiking",
        "text": "Hikers follow trails to the crater rim of a sleeping volcano at dawn.",
    },
    {
        "_id": "bake-3",
        "title": "Sourdough bread",
        "text": "Sourdough bread is leavened by a wild yeast starter, flour and water.",
    },
    {
        "_id": "chess-4",
        "title": "Chess openings",
        "text": "The Sicilian defence and the French defence are popular chess openings.",
    },
    {
        "_id": "comet-5",
        "title": "Comets",
        "text": "Comets are icy bodies whose tails point away from the sun.",
        "metadata": {"source": "ignored by the reader"},
    },
    {
        "_id": "bees-6",
        "title": "Honeybees",
        "text": "Honeybees gather nectar and pollen and dance to share flower locations.",
    },
    {"_id": "jazz-7", "title": "", "text": "Jazz musicians improvise over chord changes."},
    {"_id": "tide-8", "title": "Tides", "text": "Ocean tides follow the pull of the moon."},
]
QUERIES = [
    {"_id": "q1", "text": "volcano lava eruption"},
    {"_id": "q2", "text": "sourdough yeast starter"},
    {"_id": "q3", "text": "chess openings defence"},
    {"_id": "q4", "text": "honeybees nectar pollen"},
    {"_id": "q5", "text": "jazz chords"},  # judged, but nothing relevant: not evaluated
    {"_id": "q9", "text": "not in the qrels"},
]
# graded: volc-1 answers q1 fully (2), hike-2 only mentions a volcano (1); 0 is non-relevant
QRELS = [
    ("q1", "volc-1", 2),
    ("q1", "hike-2", 1),
    ("q2", "bake-3", 2),
    ("q3", "chess-4", 1),
    ("q3", "jazz-7", 0),
    ("q4", "bees-6", 2),
    ("q5", "jazz-7", 0),
]


def jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_beir(
    root: Path,
    corpus: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
    split: str = "test",
) -> Path:
    """Write the tiny folder into ``root``; a text argument replaces that file's content."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(jsonl(CORPUS) if corpus is None else corpus)
    (root / "queries.jsonl").write_text(jsonl(QUERIES) if queries is None else queries)
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS)
    text = "query-id\tcorpus-id\tscore\n" + rows if qrels is None else qrels
    (root / "qrels" / f"{split}.tsv").write_text(text)
    return root
