"""The filter language: parsing, Chroma translation and Python evaluation agree."""

from __future__ import annotations

import pytest

from llmops.errors import InvalidRequest
from llmops.rag.filters import MAX_CONDITIONS, MAX_DEPTH, matches, parse, to_chroma

META = {"source": "a.md", "page": 3, "lang": "en", "draft": False}


@pytest.mark.parametrize(
    ("spec", "chroma", "expected"),
    [
        ({"source": "a.md"}, {"source": {"$eq": "a.md"}}, True),
        ({"page": {"gte": 3}}, {"page": {"$gte": 3}}, True),
        ({"page": {"gt": 3}}, {"page": {"$gt": 3}}, False),
        ({"page": {"lt": 4}}, {"page": {"$lt": 4}}, True),
        ({"page": {"lte": 2}}, {"page": {"$lte": 2}}, False),
        ({"lang": {"in": ["de", "en"]}}, {"lang": {"$in": ["de", "en"]}}, True),
        ({"lang": {"nin": ["en"]}}, {"lang": {"$nin": ["en"]}}, False),
        ({"lang": {"ne": "de"}}, {"lang": {"$ne": "de"}}, True),
        ({"draft": False}, {"draft": {"$eq": False}}, True),
        (
            {"source": "a.md", "page": 3},
            {"$and": [{"source": {"$eq": "a.md"}}, {"page": {"$eq": 3}}]},
            True,
        ),
        (
            {"or": [{"source": "b.md"}, {"page": {"gt": 2}}]},
            {"$or": [{"source": {"$eq": "b.md"}}, {"page": {"$gt": 2}}]},
            True,
        ),
        ({"missing": "x"}, {"missing": {"$eq": "x"}}, False),
    ],
)
def test_translation_and_evaluation(spec: dict, chroma: dict, expected: bool) -> None:
    node = parse(spec)
    assert to_chroma(node) == chroma
    assert matches(node, META) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "non-empty JSON object"),
        ({"page": {"between": [1, 2]}}, "unknown operator 'between'"),
        ({"page": {"gt": "3"}}, "needs a number"),
        ({"page": {"gt": True}}, "needs a number"),
        ({"lang": {"in": "en"}}, "non-empty list"),
        ({"lang": {"in": []}}, "non-empty list"),
        ({"lang": {"in": [1, "en"]}}, "values of one type"),
        ({"and": []}, "non-empty list of filters"),
        ({"$and": [{"a": 1}]}, "unknown filter operator '$and'"),
        ({"page": {"gt": 1, "lt": 3}}, "exactly one operator"),
        ({"tags": ["a", "b"]}, "string, number or boolean"),
    ],
)
def test_invalid_filters_say_what_is_wrong(spec: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("$", r"\$")):
        parse(spec)


def nested(depth: int) -> dict:
    spec: dict = {"lang": "en"}
    for _ in range(depth - 1):
        spec = {"and": [spec]}
    return spec


def test_nesting_and_size_are_bounded() -> None:
    """A filter nested a thousand levels deep was a RecursionError (HTTP 500); it is refused."""
    assert matches(parse(nested(MAX_DEPTH)), META)
    for spec in (nested(MAX_DEPTH + 1), nested(1000)):
        with pytest.raises(InvalidRequest, match=f"deeper than {MAX_DEPTH} levels"):
            parse(spec)
    wide = {"or": [{"page": n} for n in range(MAX_CONDITIONS)]}
    assert matches(parse(wide), META)
    wide["or"].append({"page": -1})
    with pytest.raises(InvalidRequest, match=f"more than {MAX_CONDITIONS} comparisons"):
        parse(wide)
