"""The no-LLM generator: answers with the retrieved sentences that best match the question.

Every sentence it returns is quoted from a retrieved chunk and cited as [n], n being the
chunk's position in the context (and in the response's sources). When no retrieved chunk is
similar enough to the question (``min_score``) it abstains plainly instead of inventing an
answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from llmops.registry import register
from llmops.types import Generation, GenerationRequest, ScoredChunk

NO_ANSWER = "I could not find an answer to that in the indexed documents."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])|\n{2,}|\n(?=[#>*\-|]|\d+\.)")
_MARKUP = re.compile(r"^(#{1,6}\s+|[-*+]\s+|>\s*|\d+\.\s+)")
_WORD = re.compile(r"[a-z0-9_]+")
_STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does did for from how i if in into is it
    its me my of on or our so that the their them then there these this those to was we what
    when where which who why will with would you your about should""".split()
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


@lru_cache(maxsize=8192)
def analysed(text: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Sentences of a chunk with their term sets (cached: the same chunks recur across queries)."""
    return tuple((s, frozenset(terms(s))) for s in sentences(text))


def sentences(text: str) -> list[str]:
    """Prose sentences of a chunk, without Markdown markup, code blocks or table rows."""
    prose = re.sub(r"```.*?(```|$)", "\n\n", text, flags=re.S)
    out = []
    for piece in _SENTENCE_END.split(prose):
        line = " ".join(_MARKUP.sub("", piece.strip()).split())
        if len(line) >= 20 and not line.startswith("|"):
            out.append(line)
    return out


def _body(hit: ScoredChunk) -> str:
    """The chunk text without the heading-path line a chunker may have put in front."""
    heading = hit.chunk.metadata.get("heading")
    text = hit.chunk.text
    if isinstance(heading, str) and text.startswith(heading + "\n"):
        return text[len(heading) :].lstrip("\n")
    return text


@dataclass(frozen=True)
class _Candidate:
    text: str
    citation: int
    position: int
    score: float


@register("generator", "extractive", summary="no-LLM answers: best-matching retrieved sentences")
class ExtractiveGenerator:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_sentences: int = Field(3, ge=1, le=20)
        min_score: float = Field(
            0.25,
            ge=-1.0,
            le=1.0,
            description="Abstain when no chunk reaches this cosine similarity to the question "
            "(its score, where no similarity is known: sparse-only search).",
        )

    name = "extractive"
    uses_prompt = False

    def __init__(self, config: Config) -> None:
        self.config = config

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> Generation:
        relevant = [
            (i, hit)
            for i, hit in enumerate(request.context, 1)
            if hit.relevance >= self.config.min_score
        ]
        if not relevant:
            return Generation(text=NO_ANSWER, generator=self.name, abstained=True)
        picked = self._pick(request.question, relevant)
        text = " ".join(f"{c.text} [{c.citation}]" for c in picked)
        cited = tuple(sorted({c.citation for c in picked}))
        return Generation(text=text, generator=self.name, cited=cited)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        """The answer one quoted sentence at a time (it is ready at once; no model runs)."""
        generation = await self.generate(request)
        for piece in re.split(r"(?<=\] )", generation.text):  # joined, they are the text
            if piece:
                yield piece
        yield generation

    def _pick(self, question: str, relevant: list[tuple[int, ScoredChunk]]) -> list[_Candidate]:
        pool = [
            (citation, position, sentence, words, hit.score)
            for citation, hit in relevant
            for position, (sentence, words) in enumerate(analysed(_body(hit)))
        ]
        if not pool:
            first, hit = relevant[0]
            return [_Candidate(" ".join(hit.chunk.text.split())[:400], first, 0, hit.score)]
        weights = _idf([words for _, _, _, words, _ in pool])
        wanted = frozenset(terms(question))
        scored = [
            _Candidate(s, c, p, _score(words, wanted, weights, retrieval, p))
            for c, p, s, words, retrieval in pool
            if words & wanted
        ]
        if not scored:  # nothing shares a word with the question: quote the best chunk's lead
            c, p, s, _, retrieval = max(pool, key=lambda item: (item[4], -item[1]))
            scored = [_Candidate(s, c, p, retrieval)]
        best = sorted(scored, key=lambda c: -c.score)[: self.config.max_sentences]
        return sorted(best, key=lambda c: (c.citation, c.position))


def _idf(documents: list[frozenset[str]]) -> dict[str, float]:
    frequency = Counter(term for doc in documents for term in doc)
    total = len(documents)
    return {t: math.log(1.0 + total / n) for t, n in frequency.items()}


def _score(
    words: frozenset[str],
    wanted: frozenset[str],
    weights: dict[str, float],
    retrieval: float,
    position: int,
) -> float:
    overlap = sum(weights.get(t, 0.0) for t in words & wanted)
    return overlap * (0.5 + retrieval) + 0.3 * retrieval - 0.01 * position
