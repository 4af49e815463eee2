"""A tiny QA set over the test corpus (tests/conftest.py PAGES) and an eval suite writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

QA = [
    {
        "id": "python",
        "question": "Which Python version does Widgetron need?",
        "answers": ["Widgetron runs on Linux and macOS with Python 3.11 or newer."],
        "context_ids": ["docs/install.md"],
    },
    {
        "id": "restore",
        "question": "How do I restore a backup?",
        "answers": ["Stop the server and run widgetron restore with the archive file name."],
        "context_ids": ["docs/backup.md"],
        "contexts": [
            "To restore, stop the server and run widgetron restore with the archive file name."
        ],
    },
    {
        "id": "price",
        "question": "How much does the team edition cost?",
        "answers": ["The team edition costs 20 euros per seat and month."],
        "context_ids": ["docs/pricing.md"],
    },
    {
        "id": "colour",
        "question": "Which paint colour do new widgets get by default?",
        "answers": ["Widgetron paints widgets in teal by default."],
        "context_ids": ["docs/notes/colors.txt"],
    },
    {
        "id": "flux",
        "question": "Which quantum flux capacitor firmware ships with the oven?",
        "answerable": False,
    },
]


def write_suite(root: Path, app: Path, **sections: Any) -> Path:
    """Write the QA set and a suite over ``app`` into ``root``; keywords replace sections."""
    dataset = root / "qa.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in QA))
    data: dict[str, Any] = {
        "name": "tiny",
        "app": str(app),
        "dataset": {"path": "qa.jsonl"},
        "metrics": [
            "hit@2",
            "recall@2",
            "mrr@2",
            "token_f1",
            "rouge_l",
            "exact_match",
            "semantic_similarity",
            "abstention_accuracy",
        ],
        "gates": ["hit@2 >= 0.5"],
        "concurrency": 2,
        "results_dir": "results",
        "resamples": 200,
    }
    data.update(sections)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
