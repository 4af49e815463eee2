"""Batch inference: a CSV or Parquet file predicted in chunks with a registered version, each
chunk checked against the app's schema and written as one part; a killed run resumes at the
first part it had not written, and the parts are joined into the output file at the end."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config.model_app import ModelAppConfig
from llmops.deps import require
from llmops.errors import InvalidRows, RowProblem
from llmops.ml.predict import predict_rows, rows_frame

Progress = Callable[[int], None]
"""Told the rows done so far."""


@dataclass(frozen=True)
class BatchReport:
    rows: int
    parts: int
    resumed_parts: int  # written by an earlier, interrupted run
    output: Path


def predict_file(
    app: ModelAppConfig,
    model: Any,
    columns: list[str],
    source: Path,
    output: Path,
    chunk_rows: int,
    progress: Progress | None = None,
) -> BatchReport:
    """Predict every row of ``source`` into ``output`` (Parquet): the input columns plus
    ``prediction`` and, for classifiers, ``probability_<class>`` columns."""
    pandas = require("pandas", "ml")
    parts = output.parent / f"{output.name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    done = rows = resumed = 0
    for number, chunk in enumerate(_chunks(source, chunk_rows)):
        part = parts / f"part-{number:06d}.parquet"
        if part.exists():
            resumed += 1
        else:
            _predicted(app, model, columns, chunk, done).to_parquet(part.with_suffix(".tmp"))
            part.with_suffix(".tmp").rename(part)  # a part exists only once it is whole
        done += len(chunk)
        rows += len(chunk)
        if progress is not None:
            progress(done)
    files = sorted(parts.glob("part-*.parquet"))
    write_joined([pandas.read_parquet(f) for f in files], output)
    shutil.rmtree(parts)
    return BatchReport(rows, len(files), resumed, output)


def write_joined(frames: list[Any], output: Path) -> None:
    """The predicted chunks, in order, as one Parquet file."""
    pandas = require("pandas", "ml")
    (pandas.concat(frames, ignore_index=True) if frames else pandas.DataFrame()).to_parquet(output)


def _predicted(app: ModelAppConfig, model: Any, columns: list[str], chunk: Any, first: int) -> Any:
    try:
        return predicted_chunk(app, model, columns, chunk)
    except InvalidRows as exc:  # row numbers in the whole file, not the chunk
        raise InvalidRows(
            [RowProblem(None if p.row is None else p.row + first, p.column, p.message)
             for p in exc.problems]
        ) from None  # fmt: skip


def predicted_chunk(app: ModelAppConfig, model: Any, columns: list[str], chunk: Any) -> Any:
    """``chunk`` (a DataFrame) with ``prediction`` and ``probability_<class>`` columns;
    InvalidRows numbering the rows from the chunk's first."""
    records = chunk.astype(object).where(chunk.notna(), None).to_dict("records")
    frame = rows_frame(records, app, columns)
    out = chunk.reset_index(drop=True).copy()
    predictions = predict_rows(model, frame)
    out["prediction"] = [p.label for p in predictions]
    for label in predictions[0].probabilities or {} if predictions else {}:
        out[f"probability_{label}"] = [(p.probabilities or {}).get(label) for p in predictions]
    return out


def _chunks(source: Path, rows: int) -> Iterator[Any]:
    """The file's rows, ``rows`` at a time (Parquet by extension, else CSV)."""
    pandas = require("pandas", "ml")
    if source.suffix.lower() == ".parquet":
        parquet = require("pyarrow.parquet", "ml")
        for batch in parquet.ParquetFile(source).iter_batches(batch_size=rows):
            yield batch.to_pandas()
        return
    yield from pandas.read_csv(source, chunksize=rows, skipinitialspace=True)


def count_rows(source: Path) -> int | None:
    """Rows in ``source`` when cheap to know (Parquet metadata), for a progress bar."""
    if source.suffix.lower() != ".parquet":
        return None
    return int(require("pyarrow.parquet", "ml").ParquetFile(source).metadata.num_rows)
