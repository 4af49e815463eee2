"""Confined inputs: paths that stay inside their roots, YAML entry points that refuse alias
bombs, deep nesting and huge files, and loaders that refuse pathological files with a reason
(a zip-bomb PDF, JSON nested 100,000 deep, a 50 MB CSV field, slow HTML, oversized files)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmops.config import (
    config_kind,
    load_app_config,
    load_finetune_config,
    load_model_app_config,
    read_yaml,
)
from llmops.config.yaml_source import MAX_BYTES, MAX_DEPTH
from llmops.confine import Escape, check_tree, escaping_links, join_inside, relative_part
from llmops.errors import ConfigError, LoadError
from llmops.evaluation.suite import load_suite
from llmops.rag.loaders.directory import discover
from llmops.rag.loaders.html import HtmlLoader
from llmops.rag.loaders.pdf import PdfLoader, PdfSettings
from llmops.rag.loaders.records import CsvLoader, JsonLoader

# --- one confinement helper ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("a/../../etc", r"'\.\.'"),
        ("..\\..\\etc", r"'\.\.'"),
        ("a\x00b", "NUL"),
    ],
)
def test_relative_parts_that_leave_the_folder_are_refused(relative: str, reason: str) -> None:
    with pytest.raises(Escape, match=reason):
        relative_part(relative)


def test_join_inside_follows_links_and_refuses_those_leading_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "sub")
    assert join_inside(root, "in/x.txt") == root / "in/x.txt"
    assert join_inside(root, "sub/./y") == root / "sub/y"
    with pytest.raises(Escape, match="symbolic link out of"):
        join_inside(root, "out/x.txt")
    with pytest.raises(Escape, match=r"'\.\.'"):
        join_inside(root, "sub/../../outside")


def test_escaping_links_are_listed_and_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "deep").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "a.txt").write_text("a")
    (root / "inside").symlink_to(root / "a.txt")
    (root / "deep/key").symlink_to(tmp_path / "secret")
    (root / "up").symlink_to(tmp_path)
    assert escaping_links(root) == ["deep/key", "up"]
    with pytest.raises(Escape, match="deep/key, up"):
        check_tree(root)
    check_tree(root / "deep/../a.txt")  # a file: nothing under it


# --- YAML entry points --------------------------------------------------------------------

APP = "name: tiny\nsources:\n  - path: docs\n"
MODEL = "kind: model\nname: tiny\n"
JOB = "kind: finetune\nname: tiny\n"
SUITE = "app: app.yaml\ndataset: qa.jsonl\n"


def _bomb(levels: int = 9) -> str:
    """A "billion laughs": each level a list of 9 aliases of the level before."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _deep(levels: int = 100_000) -> str:
    return "deep: " + "[" * levels + "]" * levels + "\n"


EntryPoint = Callable[[Path], Any]
ENTRY_POINTS: dict[str, tuple[EntryPoint, str]] = {
    "app config": (load_app_config, APP),
    "model app config": (load_model_app_config, MODEL),
    "finetune job": (load_finetune_config, JOB),
    "config kind": (config_kind, APP),
    "eval suite": (load_suite, SUITE),
    "read_yaml": (read_yaml, APP),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_yaml_entry_point_refuses_an_alias_bomb(entry: str, tmp_path: Path) -> None:
    load, head = ENTRY_POINTS[entry]
    path = tmp_path / "bomb.yaml"
    path.write_text(head + _bomb())
    with pytest.raises(ConfigError, match="YAML nodes once aliases are expanded") as caught:
        load(path)
    assert caught.value.issues[0].file == str(path)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_yaml_entry_point_refuses_deep_nesting(entry: str, tmp_path: Path) -> None:
    load, head = ENTRY_POINTS[entry]
    path = tmp_path / "deep.yaml"
    path.write_text(head + _deep())
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels") as caught:
        load(path)
    assert caught.value.issues[0].file == str(path)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_yaml_entry_point_refuses_a_huge_file_unread(entry: str, tmp_path: Path) -> None:
    load, head = ENTRY_POINTS[entry]
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:  # 200 MB, sparse: nothing is written past the head
        handle.write(head.encode())
        handle.truncate(200_000_000)
    with pytest.raises(ConfigError, match=r"200\.0 MB; a config may be at most 10 MB") as caught:
        load(path)
    assert caught.value.issues[0].file == str(path)


def test_the_size_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_BYTES == 10_000_000
    monkeypatch.setattr("llmops.config.yaml_source.MAX_BYTES", 1000)  # parsing 10 MB is slow
    path = tmp_path / "big.yaml"
    path.write_text(APP + "#" * (999 - len(APP)) + "\n")
    assert read_yaml(path)[0]["name"] == "tiny"
    path.write_text(APP + "#" * (1000 - len(APP)) + "\n")
    with pytest.raises(ConfigError, match=r"0\.0 MB; a config may be at most 0\.001 MB"):
        read_yaml(path)


def test_nesting_within_the_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text("deep: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n")
    data, _ = read_yaml(path)
    value = data["deep"]
    for _ in range(MAX_DEPTH - 2):
        value = value[0]
    assert value == [1]


@pytest.mark.parametrize("field", ["include", "exclude"])
def test_a_glob_with_dot_dot_is_a_located_config_error(field: str, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    path = tmp_path / "app.yaml"
    path.write_text(APP + f"    {field}: ['**/*.md', '../secret/**']\n")
    with pytest.raises(ConfigError, match=r"glob '\.\./secret/\*\*' leaves the source") as caught:
        load_app_config(path)
    assert caught.value.issues[0].path == f"sources.0.{field}.1"


# --- loaders ------------------------------------------------------------------------------


def _pdf(streams: list[bytes]) -> bytes:
    """A PDF with one page per (FlateDecode-compressed) content stream, Helvetica as F1."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(streams))), len(streams)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, data in enumerate(streams):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data)
        )
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _text_stream(text: str) -> bytes:
    return zlib.compress(f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode())


def _bomb_stream(megabytes: int) -> bytes:
    """A content stream of ``megabytes`` MB of spaces, deflated to about 1/1000 of that."""
    deflate, block = zlib.compressobj(9), b" " * (1 << 20)
    return b"".join(deflate.compress(block) for _ in range(megabytes)) + deflate.flush()


def test_a_pdf_zip_bomb_is_refused_and_not_handed_to_pdfium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.pdf"
    path.write_bytes(_pdf([_text_stream("Hello"), _bomb_stream(100)]))  # 100 MB inflated
    assert path.stat().st_size < 200_000

    def no_pdfium(*args: Any) -> Any:
        raise AssertionError("a bomb must not be handed to PDFium")

    monkeypatch.setattr("llmops.rag.loaders.pdf._read_pdfium", no_pdfium)
    with pytest.raises(LoadError, match=r"safety limits.*Limit reached while decompressing"):
        PdfLoader().load(path, "docs/bomb.pdf")


def test_a_pdf_over_max_pages_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    path.write_bytes(_pdf([_text_stream(f"Page {i}") for i in range(3)]))
    assert len(PdfLoader(PdfSettings(max_pages=3)).load(path, "three.pdf")) == 3
    with pytest.raises(LoadError, match=r"3 pages, over the limit of 2.*max_pages"):
        PdfLoader(PdfSettings(max_pages=2)).load(path, "three.pdf")


def test_a_pdf_past_its_time_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slow.pdf"
    path.write_bytes(_pdf([_text_stream("Hello")]))
    with pytest.raises(LoadError, match=r"parsing took over 1e-09 s.*timeout_s"):
        PdfLoader(PdfSettings(timeout_s=1e-9)).load(path, "slow.pdf")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_nested_100000_deep_is_a_clean_per_file_failure(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"text": "fine"}\n' * (suffix == ".jsonl") + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(LoadError, match="JSON nested too deeply"):
        JsonLoader().load(path, f"deep{suffix}")


def test_a_csv_with_a_50_mb_field_is_refused_naming_the_setting(tmp_path: Path) -> None:
    import csv

    before = csv.field_size_limit()
    path = tmp_path / "big.csv"
    path.write_text("question,answer\nhello,short\nwhy," + "x" * 50_000_000 + "\n")
    with pytest.raises(LoadError, match=r"line 3 is longer than the limit of 1,000,000.*"):
        CsvLoader().load(path, "big.csv")
    assert csv.field_size_limit() == before  # the process-wide limit is put back
    roomy = CsvLoader(CsvLoader.Config(max_field_chars=60_000_000)).load(path, "big.csv")
    assert len(roomy) == 2 and len(roomy[1].text) > 50_000_000


def test_html_past_its_time_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><body>" + "<p>words</p>" * 20_000 + "</body></html>")
    assert HtmlLoader().load(path, "page.html")[0].text.startswith("words")
    slow = HtmlLoader(HtmlLoader.Config(timeout_s=1e-9))
    with pytest.raises(LoadError, match=r"parsing took over 1e-09 s.*\.html.*timeout_s"):
        slow.load(path, "page.html")


def test_files_over_max_file_mb_are_refused_unread(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "small.md").write_text("# Small\n")
    with (root / "huge.html").open("wb") as handle:  # 150 MB, sparse on disk
        handle.truncate(150_000_000)
    found = discover(root, ["**/*"], [], max_file_mb=100)
    assert found.files == [root / "small.md"]
    assert found.refused == {
        "huge.html": "file is 150.0 MB, over the limit of 100 MB: skipped "
        "(raise sources[].max_file_mb to read it)"
    }
    assert discover(root / "huge.html", ["**/*"], [], max_file_mb=100).files == []
    assert len(discover(root, ["**/*"], [], max_file_mb=200).files) == 2
