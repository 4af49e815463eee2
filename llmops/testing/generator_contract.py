"""The contract every ``Generator`` keeps, as plain assertions any test can call.

from llmops.testing.generator_contract import check_generator
asyncio.run(check_generator(MyGenerator(MyGenerator.Config(...))))

It checks the whole answer and the stream (pieces that join to the final text, one final
``Generation``), that a stream abandoned after its first piece is cleaned up, and that closing
twice is harmless.
"""

from __future__ import annotations

from llmops.protocols import Generator
from llmops.types import Chunk, Generation, GenerationRequest, Message, ScoredChunk

CONTEXT = (
    ScoredChunk(
        Chunk(
            "c1",
            "manual.md",
            "To restore a backup, stop the server and run the restore "
            "command with the archive name.",
            "manual.md",
            0,
            {"heading": "Backups"},
        ),
        0.82,
    ),
    ScoredChunk(
        Chunk(
            "c2",
            "pricing.md",
            "The team edition costs twenty euros per seat and month.",
            "pricing.md",
            0,
        ),
        0.41,
    ),
)
PROMPT = (
    Message("system", "Answer from the numbered passages and cite them as [n]."),
    Message(
        "user",
        "[1] To restore a backup ...\n[2] The team edition ...\n\n"
        "Question: How do I restore a backup?",
    ),
)


def check_generation(result: Generation, context_size: int) -> None:
    """What any returned Generation must satisfy."""
    assert isinstance(result, Generation), f"expected a Generation, got {type(result)!r}"
    assert isinstance(result.text, str) and result.text.strip(), "the answer text is empty"
    assert result.generator, "Generation.generator must name the generator that answered"
    assert all(1 <= n <= context_size for n in result.cited), f"cited out of range: {result.cited}"
    assert list(result.cited) == sorted(set(result.cited)), "cited must be sorted and distinct"
    assert result.usage.prompt_tokens >= 0 and result.usage.completion_tokens >= 0


async def check_stream(generator: Generator, request: GenerationRequest) -> Generation:
    """Stream one answer: text pieces first, then one Generation whose text they make up."""
    pieces: list[str] = []
    final: Generation | None = None
    async for item in generator.stream(request):
        assert final is None, "nothing may follow the final Generation"
        if isinstance(item, Generation):
            final = item
        else:
            assert isinstance(item, str), f"stream items are str or Generation, got {item!r}"
            pieces.append(item)
    assert final is not None, "the stream must end with a Generation"
    assert pieces, "the stream must yield the text before the final Generation"
    assert "".join(pieces) == final.text, "the pieces must join to the final text"
    check_generation(final, len(request.context))
    return final


async def check_abandoned_stream(generator: Generator, request: GenerationRequest) -> None:
    """A caller that goes away after the first piece: closing the stream must not fail."""
    stream = generator.stream(request)
    first = await anext(stream)
    assert isinstance(first, str | Generation)
    await stream.aclose()


async def check_generator(generator: Generator) -> Generation:
    """Start; answer with context, without context and as a stream; abandon a stream; close
    twice. Returns the first answer so the caller can add backend-specific assertions."""
    assert isinstance(generator.name, str) and generator.name, "a generator needs a name"
    assert isinstance(generator.uses_prompt, bool), "uses_prompt must be a bool"
    request = GenerationRequest("How do I restore a backup?", CONTEXT, PROMPT)
    await generator.start()
    try:
        answer = await generator.generate(request)
        check_generation(answer, len(CONTEXT))
        empty = await generator.generate(GenerationRequest(request.question, (), PROMPT))
        check_generation(empty, 0)
        await check_stream(generator, request)
        await check_abandoned_stream(generator, request)
        again = await generator.generate(request)  # still serves after an abandoned stream
        check_generation(again, len(CONTEXT))
    finally:
        await generator.close()
    await generator.close()  # closing twice is harmless
    return answer
