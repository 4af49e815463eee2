"""Whole-process time of `llmops ingest` of an unchanged corpus, against baselines measured
in the same run.

    python bench/reingest.py [--repeats 7] [--no-fastapi]

Corpora: the quickstart app (configs/quickstart.yaml: the guide in datasets/guide) and the
FastAPI docs (../shared/datasets/fastapi-docs, recursive 1000/200 chunker: 2,068 chunks; left
out with a note when the dataset is absent). Each is ingested once into a fresh data folder
(``first_ingest``: the model loads and every chunk is embedded), then every round runs, in a
rotating order, one process of each:

- ``python_import_llmops``: ``python -c "import llmops"`` (the interpreter and the package);
- ``llmops_help``: ``llmops --help`` (the CLI's imports);
- ``reingest_<corpus>``: ``llmops ingest APP.yaml``, nothing changed (checked: 0 embedded);
- ``model_first_<corpus>``: the same ingestion after ``RAG.start()`` has loaded the model,
  as `llmops ingest` did before the model loaded at its first use.

Each process is timed by the wall clock and by its CPU seconds (user + system: on a shared
machine the wall time waits for the CPU; the CPU time is what a quiet machine would take, give
or take I/O). Figures are medians over rounds; ratios are taken per round, then the median.
Then, once per corpus, where the time of a re-ingestion goes: the phases of one in-process run
through the Python API (the CLI's imports, config + build, opening the indexes, discovery and
hashing, the ingestion itself) with the model libraries it imported (none is expected), and
the import time by top-level package (``python -X importtime`` of one `llmops ingest`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from common import ROOT, SHARED, emit, machine, median, write_app

LLMOPS = str(Path(sys.executable).parent / "llmops")
FASTAPI_CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}
MODEL_LIBRARIES = (
    "torch",
    "transformers",
    "sentence_transformers",
    "peft",
    "bitsandbytes",
    "onnxruntime",
)
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250"}

# what `llmops ingest` did before the model loaded lazily: start() (the model loads), ingest
MODEL_FIRST = """
import sys
from llmops.cli.main import app
from llmops.deps import offline_environment
from llmops.service import RAG
offline_environment()
with RAG.from_config(sys.argv[1]) as rag:
    report = rag.ingest()
assert report.chunks_embedded == 0, report
"""
# the phases of one re-ingestion, through the Python API the CLI calls
PHASES = """
import json, sys, time
laps = [(time.perf_counter(), time.process_time())]
import llmops.cli.main
from llmops.deps import offline_environment
from llmops.pipelines.discovery import discover_files
from llmops.service import RAG
offline_environment()
laps.append((time.perf_counter(), time.process_time()))
rag = RAG.from_config(sys.argv[1])
laps.append((time.perf_counter(), time.process_time()))
import chromadb
laps.append((time.perf_counter(), time.process_time()))
rag.open()
laps.append((time.perf_counter(), time.process_time()))
discover_files(rag.components.sources)
laps.append((time.perf_counter(), time.process_time()))
report = rag.ingest()
laps.append((time.perf_counter(), time.process_time()))
rag.close()
laps.append((time.perf_counter(), time.process_time()))
names = ["cli_imports", "config_and_build", "import_chromadb", "open_records_chroma_bm25",
         "discovery_and_hashing", "ingestion", "close"]
print(json.dumps({
    **{name: {"wall_s": b[0] - a[0], "cpu_s": b[1] - a[1]}
       for name, a, b in zip(names, laps, laps[1:])},
    "files": report.unchanged,
    "model_libraries": sorted(set(sys.argv[2].split(",")) & set(sys.modules)),
}))
"""


def quickstart_app(folder: Path) -> Path:
    """configs/quickstart.yaml with its data in ``folder`` (the source stays datasets/guide)."""
    folder.mkdir(parents=True)
    data = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    data["data_dir"] = str(folder / "data")
    for source in data["sources"]:
        source["path"] = str((ROOT / "configs" / source["path"]).resolve())
    config = folder / "quickstart.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    """User + system CPU seconds of the process: what the wall time would be on a quiet
    machine, give or take waits (the CPU is shared, so the wall time is noisy)."""
    output: str


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> Timing:
    """One process, timed; a failing process stops the benchmark."""
    cpu, started = _cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT)
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stdout}\n{done.stderr}")
    return Timing(elapsed, cpu, done.stdout + done.stderr)


def reingest(config: Path) -> Timing:
    timing = timed([LLMOPS, "ingest", str(config)])
    if " 0 chunks embedded" not in timing.output:
        raise RuntimeError(f"the corpus changed between runs:\n{timing.output}")
    return timing


def commands(apps: dict[str, Path]) -> dict[str, Any]:
    """Each measured process, by name: a function returning its wall seconds."""
    runs: dict[str, Any] = {
        "python_import_llmops": lambda: timed([sys.executable, "-c", "import llmops"]),
        "llmops_help": lambda: timed([LLMOPS, "--help"]),
    }
    for name, config in apps.items():
        runs[f"reingest_{name}"] = lambda c=config: reingest(c)
        model_first = [sys.executable, "-c", MODEL_FIRST, str(config)]
        runs[f"model_first_{name}"] = lambda m=model_first: timed(m)
    return runs


def rounds(runs: dict[str, Any], repeats: int) -> list[dict[str, Timing]]:
    names = list(runs)
    results = []
    for number in range(repeats):
        order = names[number % len(names) :] + names[: number % len(names)]
        results.append({name: runs[name]() for name in order})
        walls = {name: round(t.wall_s, 2) for name, t in results[-1].items()}
        print(f"round {number + 1} (wall s): {json.dumps(walls)}", file=sys.stderr)
    return results


def import_by_package(config: Path, top: int = 12) -> dict[str, float]:
    """Import time (self, seconds) by top-level package of one `llmops ingest` (-X importtime;
    the tracing inflates the figures a little, not their shares)."""
    command = [sys.executable, "-X", "importtime", "-m", "llmops.cli.main", "ingest", str(config)]
    totals: Counter[str] = Counter()
    for line in timed(command).output.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
        if found:
            totals[found.group(3).split(".")[0]] += int(found.group(1)) / 1e6
    return {name: round(s, 3) for name, s in totals.most_common(top)} | {
        "all_packages": round(sum(totals.values()), 3)
    }


def phases(config: Path) -> dict[str, Any]:
    output = timed([sys.executable, "-c", PHASES, str(config), ",".join(MODEL_LIBRARIES)]).output
    found = json.loads(output.strip().splitlines()[-1])
    return {
        k: {n: round(x, 3) for n, x in v.items()} if isinstance(v, dict) else v
        for k, v in found.items()
    }


def summary(names: list[str], results: list[dict[str, Timing]]) -> dict[str, Any]:
    def figures(key: str) -> dict[str, Any]:
        def ratio(run: str, base: str) -> float:
            return round(median([getattr(r[run], key) / getattr(r[base], key) for r in results]), 3)

        reingests = [n.removeprefix("reingest_") for n in names if n.startswith("reingest_")]
        return {
            "median": {n: round(median([getattr(r[n], key) for r in results]), 3) for n in names},
            "max": {n: round(max(getattr(r[n], key) for r in results), 3) for n in names},
            "reingest_to_help": {c: ratio(f"reingest_{c}", "llmops_help") for c in reingests},
            "reingest_to_model_first": {
                c: ratio(f"reingest_{c}", f"model_first_{c}") for c in reingests
            },
        }

    return {"wall_s": figures("wall_s"), "cpu_s": figures("cpu_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-fastapi", action="store_true", help="the quickstart corpus only")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        apps = {"quickstart": quickstart_app(Path(tmp) / "quickstart")}
        fastapi = SHARED / "fastapi-docs"
        if args.no_fastapi:
            result["fastapi"] = {"skipped": "--no-fastapi"}
        elif not fastapi.exists():
            result["fastapi"] = {"skipped": f"dataset not found: {fastapi}"}
        else:
            folder = Path(tmp) / "fastapi"
            folder.mkdir()
            apps["fastapi"] = write_app(folder, fastapi, ["**/*.md"], chunker=FASTAPI_CHUNKER)
        first = {name: timed([LLMOPS, "ingest", str(c)]) for name, c in apps.items()}
        result["first_ingest"] = {
            name: {"wall_s": round(t.wall_s, 2), "cpu_s": round(t.cpu_s, 2)}
            for name, t in first.items()
        }
        runs = commands(apps)
        measured = rounds(runs, args.repeats)
        result |= summary(list(runs), measured)
        result["phases"] = {name: phases(config) for name, config in apps.items()}
        result["import_s_by_package"] = {
            name: import_by_package(config) for name, config in apps.items()
        }
    result["repeats"] = args.repeats
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(result)


if __name__ == "__main__":
    main()
