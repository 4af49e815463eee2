"""The no-LLM generator: answers with the retrieved sentences that best match the question.

Every sentence it returns is quoted from a retrieved chunk and cited as [n], n being the
chunk's position in the context (and in the response's sources). When no retrieved chunk is
similar enough to the question (``min_score``) it abstains plainly instead of inventing an
answer.

How the answer is put together:

- Sentences. A chunk is cut into Markdown blocks (paragraphs, list items, headings; code blocks
  and table rows are dropped), and each prose block into sentences by sentencex, a maintained
  rule-based segmenter that knows abbreviations ("Epic Games, Inc.", "see p. 12"). A block with
  no sentence end inside skips the segmenter, and each chunk's sentences are cached.
- One source first. The answer quotes the best sentences (question terms weighted by rarity,
  times the passage's retrieval score) of the top-ranked source: the first relevant passage's
  document that has a sentence sharing a question term (the pages of one PDF are one source).
  A sentence from another source is added only when it covers question terms the chosen
  sentences do not, worth at least a third of the question's weight: a second report that
  repeats the question's words is not blended into an answer about the first.
- Never twice. A sentence whose words (ignoring case, spacing, punctuation and markup) equal,
  or are contained in, a chosen one is skipped: overlapping chunks and copies repeat sentences.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from functools import lru_cache

import sentencex
from pydantic import BaseModel, ConfigDict, Field

from llmops.registry import register
from llmops.types import Chunk, Generation, GenerationRequest, ScoredChunk

NO_ANSWER = "I could not find an answer to that in the indexed documents."
_NEW_TERMS_SHARE = 1 / 3  # what another source's sentence must add (see the module docstring)
_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=[#>*\-|]|\d+\.)")  # blank line, or markup starts one
_INNER_END = re.compile(r"[.!?]\S*\s")  # where a block may hold more than one sentence
_CODE_SPAN = re.compile(r"`[^`]*`")
_EMPHASIS = re.compile(r"\*\*|__")
_RUN_IN = re.compile(r"(\*\*|__)[^*_]+\1\s*")
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
    out = []
    for block in _BLOCK_BREAK.split(_CODE_BLOCK.sub("\n\n", text)):
        line = " ".join(_MARKUP.sub("", block.strip()).split())
        if not line.startswith("|"):
            out += [sentence for sentence in _split_prose(line) if len(sentence) >= 20]
    return out


def _split_prose(line: str) -> list[str]:
    """The sentences of one prose line. sentencex reads a copy with code spans and emphasis
    marks blanked out (their dots and question marks end nothing); an end it finds inside a
    word ("DOTTED.PATH"), or after a bold run-in heading ("**Embedded.** Chroma runs..."),
    is not taken."""
    if not _INNER_END.search(line):
        return [line]
    out, start, end = [], 0, 0
    for piece in sentencex.segment("en", _blank_inline_markup(line)):  # pieces concatenate
        end += len(piece)
        if piece[-1:].isspace() and not _RUN_IN.fullmatch(line[start:end]):
            out.append(line[start:end].strip())
            start = end
    return [*out, line[start:].strip()]


def _blank_inline_markup(line: str) -> str:
    """``line`` with the same length, code spans filled with x and ** / __ made spaces."""
    line = _CODE_SPAN.sub(lambda m: "`" + "x" * (len(m[0]) - 2) + "`", line)
    return _EMPHASIS.sub("  ", line)


def _source(chunk: Chunk) -> str:
    """The document a passage comes from; the pages of one PDF are one source."""
    return chunk.source if "page" in chunk.metadata else chunk.document_id


def _wording(sentence: str) -> str:
    """The sentence's words, lower-cased and space-padded (so containment is word-aligned)."""
    return f" {' '.join(_WORD.findall(sentence.lower()))} "


def _body(hit: ScoredChunk) -> str:
    """The chunk text without the heading-path line a chunker may have put in front."""
    heading = hit.chunk.metadata.get("heading")
    text = hit.chunk.text
    if isinstance(heading, str) and text.startswith(heading + "\n"):
        return text[len(heading) :].lstrip("\n")
    return text


@dataclass(frozen=True)
class _Sentence:
    """A sentence of a retrieved passage: where it stands, and how well it answers."""

    text: str
    words: frozenset[str]
    citation: int
    position: int
    source: str
    retrieval: float
    score: float = 0.0


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

    def _pick(self, question: str, relevant: list[tuple[int, ScoredChunk]]) -> list[_Sentence]:
        pool = [
            _Sentence(text, words, citation, position, _source(hit.chunk), hit.score)
            for citation, hit in relevant
            for position, (text, words) in enumerate(analysed(_body(hit)))
        ]
        if not pool:
            first, hit = relevant[0]
            lead = " ".join(hit.chunk.text.split())[:400]
            return [_Sentence(lead, frozenset(), first, 0, "", hit.score)]
        weights = _idf([s.words for s in pool])
        wanted = {t: weights[t] for t in terms(question) if t in weights}
        scored = [
            replace(s, score=_score(s.words, wanted, s.retrieval, s.position))
            for s in pool
            if s.words & wanted.keys()
        ]
        if not scored:  # nothing shares a word with the question: quote the best chunk's lead
            return [max(pool, key=lambda s: (s.retrieval, -s.position))]
        chosen = _choose(scored, wanted, self.config.max_sentences)
        return sorted(chosen, key=lambda s: (s.citation, s.position))


def _choose(scored: list[_Sentence], wanted: dict[str, float], limit: int) -> list[_Sentence]:
    """The top source's best sentences, then other sources' that add missing question terms."""
    top = min(scored, key=lambda s: s.citation).source
    needed = _NEW_TERMS_SHARE * sum(wanted.values())
    chosen: list[_Sentence] = []
    for sentence in sorted(scored, key=lambda s: (s.source != top, -s.score)):
        if len(chosen) == limit:
            break
        covered = frozenset().union(*(c.words for c in chosen))
        adds = sum(wanted.get(t, 0.0) for t in sentence.words - covered)
        if not _repeats(sentence, chosen) and (sentence.source == top or adds >= needed):
            chosen.append(sentence)
    return chosen


def _repeats(sentence: _Sentence, chosen: list[_Sentence]) -> bool:
    """Whether a chosen sentence says the same, or more (case, spacing and markup aside)."""
    mine = _wording(sentence.text)
    return any(mine in theirs or theirs in mine for theirs in (_wording(c.text) for c in chosen))


def _idf(documents: list[frozenset[str]]) -> dict[str, float]:
    frequency = Counter(term for doc in documents for term in doc)
    total = len(documents)
    return {t: math.log(1.0 + total / n) for t, n in frequency.items()}


def _score(
    words: frozenset[str], wanted: dict[str, float], retrieval: float, position: int
) -> float:
    overlap = sum(weight for t, weight in wanted.items() if t in words)
    return overlap * (0.5 + retrieval) + 0.3 * retrieval - 0.01 * position
