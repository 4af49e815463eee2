"""Loaders: content, metadata, stable ids, and a clear LoadError for every malformed file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llmops import registry
from llmops.errors import LoadError
from llmops.protocols import Loader
from llmops.rag.chunkers.markdown import MarkdownChunker, MarkdownConfig
from llmops.rag.loaders.directory import default_loaders, discover, loader_for
from llmops.rag.loaders.html import HtmlLoader
from llmops.rag.loaders.mdx import MdxLoader
from llmops.rag.loaders.pdf import PdfLoader
from llmops.rag.loaders.records import CsvLoader, JsonLoader
from llmops.rag.loaders.text import MarkdownLoader, TextLoader
from llmops.types import Document

HTML = """<html><head><title>My  Page</title><style>p { color: red }</style>
<script>var secret = 1;</script></head>
<body><nav>menu links</nav><h1>Hello</h1><p>First &amp; only
   paragraph.</p><ul><li>one</li><li>two</li></ul>
<table><tr><td>cell a</td><td>cell b</td></tr></table>
<script>alert("x")</script></body></html>"""


def _pdf(path: Path, pages: list[str], title: str | None = "Quarterly Report") -> Path:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    pdf.setTitle(title or "")  # reportlab writes "untitled" unless told otherwise
    for text in pages:
        if text:
            pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return path


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _assert_scalar_metadata(docs: list[Document]) -> None:
    for doc in docs:
        for key, value in doc.metadata.items():
            assert isinstance(key, str)
            assert isinstance(value, str | int | float | bool), (key, value)


def test_import_registers_every_loader() -> None:
    import llmops.rag.loaders  # noqa: F401

    expected = {"markdown", "mdx", "text", "html", "pdf", "json", "csv"}
    assert set(registry.names("loader")) >= expected
    for name in registry.names("loader"):
        entry = registry.get("loader", name)
        assert isinstance(entry.factory(entry.config()), Loader)
        with pytest.raises(ValidationError):
            entry.config(no_such_setting=1)


def test_markdown_title_from_front_matter(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "a.md", "---\ntitle: 'Front Title'\ntags: [x]\n---\n# Heading\n\nBody.\n"
    )
    (doc,) = MarkdownLoader().load(path, "docs/a.md")
    assert doc.id == "docs/a.md" and doc.source == "docs/a.md"
    assert doc.metadata == {"title": "Front Title"}
    assert doc.text == "# Heading\n\nBody.\n"


def test_markdown_title_from_first_heading_outside_code(tmp_path: Path) -> None:
    text = "---\nauthor: me\n---\nIntro\n\n```sh\n# not a title\n```\n\n# First Heading\n\nBody.\n"
    (doc,) = MarkdownLoader().load(_write(tmp_path / "b.md", text), "b.md")
    assert doc.metadata == {"title": "First Heading"}
    assert not doc.text.startswith("---")


def test_markdown_without_heading_and_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.markdown", b"just text\r\nsecond line\r\n")
    (doc,) = MarkdownLoader().load(path, "c.markdown")
    assert doc.metadata == {} and doc.text == "just text\nsecond line\n"


MDX = """---
title: useState
---
import {Sandpack} from '@site/components';
import Tabs from '@theme/Tabs';
export const meta = {
  author: 'x',
};

# useState {/*usestate*/}

`useState` lets you add a <Term id="s">state variable</Term> to your component.
{/* a comment
   over two lines */}

## Reference {/*reference*/}

<Tabs groupId="lang" values={[{label: 'JS', value: 'js'}]}>
<TabItem value="js" label="JavaScript">

Call `useState` at the top level, e.g. in `<Counter />`.

```jsx
import { useState } from 'react';
export default function Counter() {
  return <button onClick={() => setCount(1)}>{/* keep */}</button>;
}
```

</TabItem>
</Tabs>

### Custom id {#custom-id}

<Note />
Text after a self-closing tag.
"""


def test_mdx_drops_esm_jsx_tags_and_heading_anchors(tmp_path: Path) -> None:
    (doc,) = MdxLoader().load(_write(tmp_path / "use-state.mdx", MDX), "react/use-state.mdx")
    assert doc.id == "react/use-state.mdx" and doc.metadata == {"title": "useState"}
    lines = [line for line in doc.text.splitlines() if line.strip()]
    assert lines[:3] == [
        "# useState",
        "`useState` lets you add a state variable to your component.",
        "## Reference",
    ]
    for gone in (
        "@site/components",
        "@theme/Tabs",
        "author:",
        "<Term",
        "<Tabs",
        "TabItem",
        "<Note",
        "a comment",
        "{/*usestate",
        "{#custom-id}",
    ):
        assert gone not in doc.text, gone
    assert "Call `useState` at the top level, e.g. in `<Counter />`." in lines
    assert "### Custom id" in lines and "Text after a self-closing tag." in lines


def test_mdx_keeps_fenced_code_as_is(tmp_path: Path) -> None:
    (doc,) = MdxLoader().load(_write(tmp_path / "a.mdx", MDX), "a.mdx")
    fence = MDX[MDX.index("```jsx") : MDX.index("```\n\n</TabItem>") + 3]
    assert fence in doc.text


def test_mdx_title_from_first_heading_without_anchor(tmp_path: Path) -> None:
    text = "import X from 'x';\n\n# Getting started {/*getting-started*/}\n\nBody.\n"
    (doc,) = MdxLoader().load(_write(tmp_path / "g.mdx", text), "g.mdx")
    assert doc.metadata == {"title": "Getting started"}


def test_mdx_headings_give_clean_heading_paths(tmp_path: Path) -> None:
    (doc,) = MdxLoader().load(_write(tmp_path / "a.mdx", MDX), "a.mdx")
    chunker = MarkdownChunker(MarkdownConfig(chunk_size=400, chunk_overlap=0))
    headings = [c.metadata.get("heading") for c in chunker.split(doc)]
    assert headings == ["useState", "useState > Reference", "useState > Reference > Custom id"]


def test_mdx_with_only_imports_and_components_has_no_text(tmp_path: Path) -> None:
    text = "---\ntitle: x\n---\nimport A from 'a';\n\n<A />\n{/* nothing */}\n"
    assert MdxLoader().load(_write(tmp_path / "e.mdx", text), "e.mdx") == []


def test_text_loader_and_empty_file(tmp_path: Path) -> None:
    (doc,) = TextLoader().load(_write(tmp_path / "n.txt", "hello\nworld\n"), "n.txt")
    assert (doc.id, doc.text, doc.metadata) == ("n.txt", "hello\nworld\n", {})
    assert TextLoader().load(_write(tmp_path / "e.txt", "  \n"), "e.txt") == []


def test_html_keeps_title_and_visible_text_only(tmp_path: Path) -> None:
    (doc,) = HtmlLoader().load(_write(tmp_path / "p.html", HTML), "p.html")
    assert doc.metadata == {"title": "My Page"} and doc.id == "p.html"
    lines = doc.text.splitlines()
    assert lines[0] == "My Page"
    assert "Hello" in lines and "First & only paragraph." in lines
    assert "one" in lines and "two" in lines
    assert "cell a cell b" in lines
    for hidden in ("secret", "alert", "menu", "color"):
        assert hidden not in doc.text


def test_pdf_one_document_per_page_with_page_numbers(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "r.pdf", ["Alpha page text", "", "Gamma page text"])
    docs = PdfLoader().load(path, "files/r.pdf")
    assert [d.id for d in docs] == ["files/r.pdf#page=1", "files/r.pdf#page=3"]
    assert [d.metadata["page"] for d in docs] == [1, 3]
    assert "Alpha page text" in docs[0].text and "Gamma" not in docs[0].text
    assert "Gamma page text" in docs[1].text
    assert all(
        d.metadata["title"] == "Quarterly Report" and d.source == "files/r.pdf" for d in docs
    )


def test_pdf_without_title_has_no_title_key(tmp_path: Path) -> None:
    (doc,) = PdfLoader().load(_pdf(tmp_path / "u.pdf", ["Only page"], title=None), "u.pdf")
    assert "title" not in doc.metadata and doc.metadata["page"] == 1


def _pdf_pypdf_cannot_read(path: Path, pages: list[str], broken: int | None) -> Path:
    """A valid PDF on which pypdf stops with "Reached maximum array element count": an array
    of 100,001 numbers in page ``broken``'s content (that page fails) or, when ``broken`` is
    None, in the first page's dictionary (the whole file fails)."""
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DecodedStreamObject, NameObject, NumberObject

    writer = PdfWriter(clone_from=_pdf(path, pages))
    if broken is None:
        writer.pages[0][NameObject("/Huge")] = ArrayObject([NumberObject(0)] * 100_001)
    else:
        page = writer.pages[broken]
        stream = DecodedStreamObject()
        stream.set_data(page.get_contents().get_data() + b"BT [" + b" 0" * 100_001 + b"] TJ ET")
        page.replace_contents(stream)
    writer.write(path)
    return path


def test_pdf_pages_say_which_parser_read_them(tmp_path: Path) -> None:
    docs = PdfLoader().load(_pdf(tmp_path / "r.pdf", ["Alpha", "Beta"]), "r.pdf")
    assert [d.metadata["parser"] for d in docs] == ["pypdf", "pypdf"]


def test_pdf_falls_back_to_pdfium_when_pypdf_fails_on_the_file(tmp_path: Path) -> None:
    import pypdf

    path = _pdf_pypdf_cannot_read(tmp_path / "10q.pdf", ["Net revenue rose", "", "Risks"], None)
    with pytest.raises(pypdf.errors.LimitReachedError, match="maximum array element count"):
        [page.extract_text() for page in pypdf.PdfReader(path).pages]
    docs = PdfLoader().load(path, "sec/10q.pdf")
    assert [d.id for d in docs] == ["sec/10q.pdf#page=1", "sec/10q.pdf#page=3"]
    assert [d.text.strip() for d in docs] == ["Net revenue rose", "Risks"]
    assert all(d.metadata["parser"] == "pypdfium2" for d in docs)
    assert all(d.metadata["title"] == "Quarterly Report" for d in docs)


def test_pdf_falls_back_to_pdfium_for_the_page_pypdf_fails_on(tmp_path: Path) -> None:
    import pypdf

    path = _pdf_pypdf_cannot_read(tmp_path / "p.pdf", ["Alpha text", "Beta text"], broken=1)
    with pytest.raises(pypdf.errors.LimitReachedError, match="maximum array element count"):
        pypdf.PdfReader(path).pages[1].extract_text()
    docs = PdfLoader().load(path, "p.pdf")
    assert [(d.metadata["page"], d.metadata["parser"]) for d in docs] == [
        (1, "pypdf"),
        (2, "pypdfium2"),
    ]
    assert "Alpha text" in docs[0].text and "Beta text" in docs[1].text
    assert "\r" not in docs[1].text


def test_json_nested_records_with_field_mapping(tmp_path: Path) -> None:
    data = {
        "data": {
            "items": [
                {"id": "k1", "body": {"text": "One"}, "lang": "en", "tags": ["x"], "n": None},
                {"id": 7, "body": {"text": "Seven"}, "lang": "de"},
            ]
        }
    }
    path = _write(tmp_path / "a.json", json.dumps(data))
    config = JsonLoader.Config(
        text_field="body.text",
        id_field="id",
        metadata_fields=["lang", "tags", "n"],
        records_path="data.items",
    )
    docs = JsonLoader(config).load(path, "a.json")
    assert [(d.id, d.text) for d in docs] == [("a.json#k1", "One"), ("a.json#7", "Seven")]
    assert docs[0].metadata == {"record": 1, "lang": "en"}
    _assert_scalar_metadata(docs)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([{"text": "A"}, {"text": "B"}], ["A", "B"]),
        ({"text": "Single"}, ["Single"]),
    ],
)
def test_json_top_level_list_or_object(tmp_path: Path, content: Any, expected: list[str]) -> None:
    docs = JsonLoader().load(_write(tmp_path / "t.json", json.dumps(content)), "t.json")
    assert [d.text for d in docs] == expected
    assert [d.id for d in docs] == [f"t.json#{i}" for i in range(1, len(expected) + 1)]


def test_jsonl_records(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.jsonl", '{"text": "Two"}\n\n{"text": "Three", "k": 1}\n')
    docs = JsonLoader(JsonLoader.Config(metadata_fields=["k"])).load(path, "b.jsonl")
    assert [(d.id, d.text) for d in docs] == [("b.jsonl#1", "Two"), ("b.jsonl#2", "Three")]
    assert docs[1].metadata == {"record": 2, "k": 1}


def test_csv_template_and_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "faq.csv", "question,answer,lang\nWhat?,This.,en\nWhy?,Because.,de\n")
    config = CsvLoader.Config(template="Q: {question}\nA: {answer}", metadata_fields=["lang"])
    docs = CsvLoader(config).load(path, "faq.csv")
    assert [d.id for d in docs] == ["faq.csv#row=1", "faq.csv#row=2"]
    assert docs[1].text == "Q: Why?\nA: Because."
    assert docs[1].metadata == {"row": 2, "lang": "de"}


def test_csv_default_rendering_skips_empty_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", 'a,b,c\n1,,"x, y"\n')
    (doc,) = CsvLoader().load(path, "t.csv")
    assert doc.text == "a: 1\nc: x, y"


def test_tsv_and_explicit_delimiter(tmp_path: Path) -> None:
    (doc,) = CsvLoader().load(_write(tmp_path / "t.tsv", "a\tb\n1\t2\n"), "t.tsv")
    assert doc.text == "a: 1\nb: 2"
    semi = CsvLoader(CsvLoader.Config(delimiter=";", template="{a}-{b}"))
    assert semi.load(_write(tmp_path / "s.csv", "a;b\n1;2\n"), "s.csv")[0].text == "1-2"


def test_csv_template_is_checked_in_config() -> None:
    with pytest.raises(ValidationError) as caught:
        CsvLoader.Config(template="{unclosed")
    assert caught.value.errors()[0]["loc"] == ("template",)
    with pytest.raises(ValidationError):
        CsvLoader.Config(template="{0}")


def test_ids_are_stable_across_loads(tmp_path: Path) -> None:
    cases: list[tuple[Loader, Path]] = [
        (MarkdownLoader(), _write(tmp_path / "m.md", "# T\n\nx\n")),
        (HtmlLoader(), _write(tmp_path / "p.html", HTML)),
        (PdfLoader(), _pdf(tmp_path / "r.pdf", ["one", "two"])),
        (JsonLoader(), _write(tmp_path / "j.jsonl", '{"text": "a"}\n{"text": "b"}\n')),
        (CsvLoader(), _write(tmp_path / "c.csv", "a\n1\n2\n")),
    ]
    for loader, path in cases:
        first = loader.load(path, path.name)
        second = type(loader)().load(path, path.name)
        assert first and [d.id for d in first] == [d.id for d in second]
        assert len({d.id for d in first}) == len(first)
        assert first == second
        _assert_scalar_metadata(first)


@pytest.mark.parametrize(
    ("name", "content", "loader", "reason"),
    [
        ("bad.json", b'{"text": ', JsonLoader(), "invalid JSON at line 1"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', JsonLoader(), "invalid JSON at line 2"),
        ("empty.json", b"  ", JsonLoader(), "empty JSON"),
        ("scalar.json", b"42", JsonLoader(), "expected a list"),
        ("nofield.jsonl", b'{"text": "a"}\n{"body": "x"}\n', JsonLoader(), "record 2 has no text"),
        ("num.json", b'[{"text": 5}]', JsonLoader(), "record 1 has no text field 'text'"),
        (
            "dup.json",
            b'[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]',
            JsonLoader(JsonLoader.Config(id_field="id")),
            "record 2 repeats the id 'a'",
        ),
        (
            "noid.json",
            b'[{"text": "x"}]',
            JsonLoader(JsonLoader.Config(id_field="id")),
            "record 1 has no id field",
        ),
        (
            "path.json",
            b'{"items": []}',
            JsonLoader(JsonLoader.Config(records_path="data.items")),
            "no 'data.items'",
        ),
        ("bin.txt", b"\x00\x01\x02binary", TextLoader(), "binary"),
        ("latin.md", b"caf\xe9 au lait", MarkdownLoader(), "not valid UTF-8"),
        ("latin.html", b"<p>caf\xe9</p>", HtmlLoader(), "not valid UTF-8"),
        ("broken.pdf", b"%PDF-1.4 garbage", PdfLoader(), "unreadable PDF"),
        ("empty.pdf", b"", PdfLoader(), "unreadable PDF"),
        (
            "t.csv",
            b"a,b\n1,2\n",
            CsvLoader(CsvLoader.Config(template="{a} {missing}")),
            "template names column 'missing'",
        ),
        ("q.csv", b'a,b\n"unterminated,2\n', CsvLoader(), "malformed CSV"),
    ],
)
def test_malformed_files_raise_load_error_with_the_name(
    tmp_path: Path, name: str, content: bytes, loader: Loader, reason: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(LoadError) as caught:
        loader.load(path, f"src/{name}")
    assert caught.value.source == f"src/{name}" and str(caught.value).startswith(f"src/{name}: ")
    assert reason in caught.value.reason


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        _write(root / name, "x")


def test_discover_include_exclude_hidden_and_order(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        ["b.md", "a.md", "sub/c.md", "sub/d.txt", ".hidden/e.md", "sub/.f.md", "drafts/g.md"],
    )
    found = discover(tmp_path, ["**/*.md"], ["drafts/**"])
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == ["a.md", "b.md", "sub/c.md"]
    assert all(p.is_absolute() == tmp_path.is_absolute() for p in found.files)
    assert found.refused == {}


def test_discover_glob_semantics(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.md", "x.tmp", "sub/c.md", "sub/deep/d.md", "sub/deep/e.tmp", "z/n.md"])

    def rel(include: list[str], exclude: list[str]) -> list[str]:
        found = discover(tmp_path, include, exclude).files
        return [p.relative_to(tmp_path).as_posix() for p in found]

    assert rel(["*.md"], []) == ["a.md"]
    assert rel(["sub/*.md"], []) == ["sub/c.md"]
    assert rel(["sub/**/*.md"], []) == ["sub/c.md", "sub/deep/d.md"]
    assert rel(["**/*"], ["*.tmp"]) == ["a.md", "sub/c.md", "sub/deep/d.md", "z/n.md"]
    assert rel(["**/*.md"], ["sub/deep"]) == ["a.md", "sub/c.md", "z/n.md"]
    both = ["a.md", "sub/c.md", "sub/deep/d.md", "sub/deep/e.tmp"]
    assert rel(["**/*.md", "sub/**", "*.md"], ["z/*"]) == both  # each file once, sorted
    assert rel(["**/*.nothing"], []) == []


def test_discover_refuses_links_out_of_the_root_and_follows_links_inside(tmp_path: Path) -> None:
    root, outside = tmp_path / "docs", tmp_path / "outside"
    _tree(outside, ["secret.md", "more/secret2.md"])
    _tree(root, ["a.md", "sub/real.md", ".hidden/h.md", "data/notes.txt"])
    links = {
        "passwd.md": outside / "secret.md",  # a file out of the root
        "ext": outside,  # a folder out of the root
        "sub/deeper": outside / "more",
        "alias.md": root / "sub/real.md",  # a second name for a file inside
        "linked": root / "sub",  # a second name for a folder inside
        "sub/loop": root,  # a cycle
        "shown": root / ".hidden",  # the only way to a hidden folder's files
        "notes.md": root / "data/notes.txt",  # a .md name for a file the globs leave out
        "dangling.md": root / "nothing.md",
        "ring-a.md": root / "ring-b.md",  # links that never reach a file
        "ring-b.md": root / "ring-a.md",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    found = discover(root, ["**/*.md"], [])
    assert [p.relative_to(root).as_posix() for p in found.files] == [
        "a.md",
        "notes.md",
        "shown/h.md",
        "sub/real.md",
    ]
    assert sorted(found.refused) == ["ext", "passwd.md", "sub/deeper"]
    assert all("outside the source folder" in reason for reason in found.refused.values())


def test_discover_reports_refused_links_only_where_the_globs_would_look(tmp_path: Path) -> None:
    _tree(tmp_path / "outside", ["x.md"])
    root = tmp_path / "docs"
    _tree(root, ["a.md"])
    (root / "x.png").symlink_to(tmp_path / "outside/x.md")
    (root / "drafts").symlink_to(tmp_path / "outside")
    assert discover(root, ["**/*.md"], ["drafts/**"]).refused == {}
    assert sorted(discover(root, ["**/*"], []).refused) == ["drafts", "x.png"]


def test_discover_through_a_linked_root(tmp_path: Path) -> None:
    _tree(tmp_path / "real", ["a.md"])
    (tmp_path / "docs").symlink_to(tmp_path / "real")
    found = discover(tmp_path / "docs", ["**/*"], [])
    assert found.files == [tmp_path / "docs/a.md"] and found.refused == {}


def test_discover_file_root_and_missing_root(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.md"])
    assert discover(tmp_path / "a.md", ["*.nothing"], ["a.md"]).files == [tmp_path / "a.md"]
    assert discover(tmp_path / "nope", ["**/*"], []).files == []


def test_default_loaders_cover_every_format() -> None:
    loaders = default_loaders()
    expected = {
        ".md": MarkdownLoader,
        ".markdown": MarkdownLoader,
        ".mdx": MdxLoader,
        ".txt": TextLoader,
        ".rst": TextLoader,
        ".log": TextLoader,
        ".html": HtmlLoader,
        ".htm": HtmlLoader,
        ".pdf": PdfLoader,
        ".json": JsonLoader,
        ".jsonl": JsonLoader,
        ".csv": CsvLoader,
        ".tsv": CsvLoader,
    }
    for ext, cls in expected.items():
        assert isinstance(loaders[ext], cls), ext
    assert loader_for(Path("dir/X.PDF"), loaders) is loaders[".pdf"]
    assert loader_for(Path("x.png"), loaders) is None
    assert loader_for(Path("Makefile"), loaders) is None
