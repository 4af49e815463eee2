"""Batch prediction on Ray: Ray Data reads the file, a pool of actors (each loading the
driver's resolved version once) predicts it batch by batch, and the driver gathers the
batches in the file's order and writes the one output file."""

from __future__ import annotations

from typing import Any

from llmops.deps import require
from llmops.pipelines.batch_engines import BatchJob, marked_chunk, write_checked
from llmops.pipelines.batch_predict import BatchReport, Progress
from llmops.ray_cluster import connect


class _Predictor:
    """One Ray actor: loads the version once, then predicts the batches it is given."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        self.model = job.model.load()

    def __call__(self, batch: Any) -> Any:
        # Arrow to pandas as the local engine converts (NumPy dtypes; Ray's own pandas batches
        # may hold Arrow-backed columns, which the schema checks and the model do not expect)
        return marked_chunk(self.job, self.model, batch.to_pandas())


class RayEngine:
    """Predicts on the Ray cluster at ``address`` (``auto``, ``local`` or a URL)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def run(self, job: BatchJob, fitted: Any, progress: Progress | None = None) -> BatchReport:
        ray = connect(self.address)
        data = require("ray.data", "ray")
        context = data.DataContext.get_current()
        kept = context.execution_options.preserve_order, context.enable_progress_bars
        context.execution_options.preserve_order = True  # rows come back in the file's order
        context.enable_progress_bars = False
        try:
            source = str(job.source.resolve())
            dataset = data.read_csv(source) if job.csv else data.read_parquet(source)
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
            predicted = dataset.map_batches(
                _Predictor,
                fn_constructor_args=(job,),
                batch_size=job.chunk_rows,
                batch_format="pyarrow",
                compute=data.ActorPoolStrategy(min_size=1, max_size=actors),
            )
            frames, done = [], 0
            for table in predicted.iter_batches(batch_format="pyarrow", batch_size=None):
                frames.append(table.to_pandas())
                done += table.num_rows
                if progress is not None:
                    progress(done)
            return write_checked(frames, job)
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = kept
