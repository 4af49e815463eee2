"""Golden tests: the exact error report for each kind of config mistake.

Each ``tests/config_errors/<case>.yaml`` has a ``<case>.expected`` next to it. After a
deliberate change of wording, regenerate with
``UPDATE_GOLDENS=1 pytest tests/test_config_errors.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops.build import load_config
from llmops.errors import ConfigError

HERE = Path(__file__).resolve().parent / "config_errors"
REPO = HERE.parents[1]
CASES = sorted(HERE.glob("*.yaml"))


def _report(case: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(case.name)
    return str(caught.value).replace(str(HERE), "<dir>").replace(str(REPO), "<repo>") + "\n"


def test_at_least_twelve_kinds_of_mistake() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_error_report_matches_golden(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    monkeypatch.delenv("LLMOPS_GOLDEN_UNSET", raising=False)
    report = _report(case)
    golden = case.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDENS"):
        golden.write_text(report)
    assert report == golden.read_text()
