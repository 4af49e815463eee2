"""The ``evaluation:`` section: where the app finds its eval runs (``GET /evals`` and the
console's evaluations page read them; ``llmops eval run`` writes them)."""

from __future__ import annotations

from pydantic import Field

from llmops.config.component import Strict

DEFAULT_RUNS_DIR = "../.llmops/eval"


class EvaluationConfig(Strict):
    runs_dir: str = Field(
        DEFAULT_RUNS_DIR,
        min_length=1,
        description="The folder of this app's eval runs: the results_dir of its suites "
        "(relative to this config file). The default is the suites' default seen from a "
        "config in configs/ beside eval/: the project's .llmops/eval.",
    )
