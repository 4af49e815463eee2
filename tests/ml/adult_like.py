"""Small census-like tables written by the tests: the columns of UCI Adult, a label that the
features really predict (so a model can learn it), and a few missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "Y",
)  # fmt: skip


def adult_like(rows: int, seed: int = 0, min_age: int = 17) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(min_age, 90, rows)
    education_num = rng.integers(1, 17, rows)
    hours = rng.integers(5, 80, rows)
    sex = rng.choice(["Male", "Female"], rows)
    married = rng.choice(["Married-civ-spouse", "Never-married", "Divorced"], rows)
    gain = np.where(rng.random(rows) < 0.1, rng.integers(1000, 20000, rows), 0)
    signal = (
        0.05 * (age - 40) + 0.4 * (education_num - 10) + 0.04 * (hours - 40)
        + 1.2 * (married == "Married-civ-spouse") + 0.0002 * gain + rng.normal(0, 1, rows)
    )  # fmt: skip
    frame = pd.DataFrame(
        {
            "age": age,
            "workclass": rng.choice(["Private", "State-gov", "Self-emp-inc", None], rows),
            "fnlwgt": rng.integers(20000, 500000, rows),
            "education": rng.choice(["Bachelors", "HS-grad", "Masters"], rows),
            "education-num": education_num,
            "marital-status": married,
            "occupation": rng.choice(["Sales", "Exec-managerial", "Craft-repair"], rows),
            "relationship": rng.choice(["Husband", "Wife", "Not-in-family"], rows),
            "race": rng.choice(["White", "Black", "Other"], rows),
            "sex": sex,
            "capital-gain": gain,
            "capital-loss": np.zeros(rows, dtype=int),
            "hours-per-week": hours,
            "native-country": rng.choice(["United-States", "Mexico"], rows),
            "Y": np.where(signal > 1.0, ">50K", "<=50K"),
        }
    )
    return frame[list(COLUMNS)]


def write_adult_like(folder: Path, train_rows: int = 600, test_rows: int = 300) -> Path:
    """adult.data and adult.test as the public files have them ("?" for missing, the test
    labels ending in a dot)."""
    folder.mkdir(parents=True, exist_ok=True)
    adult_like(train_rows, seed=1).fillna("?").to_csv(folder / "adult.data", index=False)
    test = adult_like(test_rows, seed=2)
    test["Y"] = test["Y"] + "."
    test.fillna("?").to_csv(folder / "adult.test", index=False)
    return folder
