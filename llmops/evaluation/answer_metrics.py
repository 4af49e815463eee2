"""Answer metrics: a generated answer against one or more reference answers.

Text is normalised as SQuAD's official script does (lower case, no punctuation, no articles,
single spaces) after dropping citation markers such as ``[2]``. With several references a
sample scores its best match (SQuAD's convention). All scores are in [0, 1].

- ``exact_match``: 1 if the normalised answer equals a normalised reference.
- ``token_f1``: harmonic mean of token precision and recall (SQuAD F1).
- ``rouge_l``: F-measure of the longest common token subsequence (ROUGE-L, β = 1).
- ``bleu``: sacreBLEU's sentence BLEU (exponential smoothing) / 100.
- ``semantic_similarity``: cosine of the answer's and the reference's embeddings.
- ``abstention_accuracy``: 1 when the app abstained exactly on an unanswerable question.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from llmops.deps import require

_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
TEXT_METRICS = ("exact_match", "token_f1", "rouge_l", "bleu")
Embed = Callable[[list[str]], np.ndarray]


def normalize(text: str) -> str:
    text = _CITATION.sub(" ", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def token_f1(answer: str, reference: str) -> float:
    got, want = normalize(answer).split(), normalize(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def rouge_l(answer: str, reference: str) -> float:
    got, want = normalize(answer).split(), normalize(reference).split()
    if not got or not want:
        return float(got == want)
    lcs = _lcs(got, want)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(got), lcs / len(want)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the DP table at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def bleu(answer: str, reference: str) -> float:
    sacrebleu = require("sacrebleu", "eval")
    score = sacrebleu.sentence_bleu(normalize(answer), [normalize(reference)])
    return float(score.score) / 100.0


_TEXT_FNS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
    "bleu": bleu,
}


def best_of(metric: str, answer: str, references: Sequence[str]) -> float | None:
    """``metric`` against the best-matching reference; None when there is no reference."""
    if not references:
        return None
    fn = _TEXT_FNS[metric]
    return max(fn(answer, reference) for reference in references)


def semantic_similarity(answer: str, references: Sequence[str], embed: Embed) -> float | None:
    """Best cosine similarity between the answer and a reference (vectors need not be unit)."""
    if not references:
        return None
    vectors = np.asarray(embed([answer, *references]), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    return float(np.max(unit[1:] @ unit[0]))


def abstention_correct(abstained: bool, answerable: bool) -> float:
    """1 when the app answered an answerable question or abstained on an unanswerable one."""
    return float(abstained != answerable)
