"""SIGKILL an ingestion at several points; a re-run must give exactly a clean run's index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops import RAG
from tests.conftest import HASHING, ConfigWriter

pytestmark = pytest.mark.slow

WORKER = """
import sys
from llmops import RAG

def progress(p):
    print(f"progress {p.files_done} {p.chunks_done}", flush=True)

with RAG.from_config(sys.argv[1]) as rag:
    rag.ingest(progress=progress)
print("done", flush=True)
"""


def _big_corpus(root: Path, files: int = 40) -> None:
    for i in range(files):
        body = "\n\n".join(
            f"## Part {j}\n\nFile {i} section {j} explains widget {i * 100 + j} in detail. "
            + "Each widget has a serial number and a colour. " * 6
            for j in range(12)
        )
        (root / f"gen{i:03d}.md").write_text(f"# Generated page {i}\n\n{body}\n")


def _state(config: Path) -> tuple[set[str], dict[str, tuple[str, ...]]]:
    with RAG.from_config(config) as rag:
        active = rag.components.records.active()
        assert active is not None
        records = rag.components.records.files(active.collection)
        assert all(not r.pending_ids for r in records.values())
        ids = rag.components.store.ids(active.collection)
        assert rag.components.store.count(active.collection) == len(ids)
        sparse = rag.components.sparse  # the BM25 index recovers with the vectors
        assert sparse is not None and sparse.ids(active.collection) == ids
        return ids, {k: r.chunk_ids for k, r in records.items()}


def _kill_during(config: Path, after_progress_lines: int, extra_delay: float) -> bool:
    """Start an ingestion and SIGKILL it; returns False if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("done"):
            proc.wait()
            return False
        seen += line.startswith("progress")
        if seen >= after_progress_lines:
            break
    time.sleep(extra_delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def test_kill9_then_rerun_matches_clean_run(
    write_config: ConfigWriter, corpus: Path, tmp_path: Path
) -> None:
    _big_corpus(corpus)
    clean = write_config("clean.yaml", data_dir="clean-data", embedder=HASHING)
    with RAG.from_config(clean) as rag:
        rag.ingest()
    expected = _state(clean)

    crashy = write_config("crashy.yaml", data_dir="crashy-data", embedder=HASHING)
    kills = 0
    for lines, delay in [(1, 0.0), (2, 0.05), (1, 0.3), (3, 0.0)]:
        kills += _kill_during(crashy, lines, delay)
        # change a file between crashes: the resumed run must also pick that up
        (corpus / "gen000.md").write_text(f"# Generated page 0\n\nVersion {kills}.\n")
    assert kills >= 2, "the ingestion finished before it could be killed"
    with RAG.from_config(crashy) as rag:
        rag.ingest()
    with RAG.from_config(clean) as rag:
        rag.ingest()
    assert _state(crashy) == _state(clean)
    assert _state(clean)[0] != expected[0]  # the edit really changed the index
