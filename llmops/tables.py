"""Tables for the reports llmops writes (eval runs, training runs): Markdown and HTML from
one ``(header, rows)`` value, and the reports' shared style sheet."""

from __future__ import annotations

import html

Table = tuple[list[str], list[list[str]]]
"""A header and rows of text cells."""

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;font-size:14px;white-space:pre-line}th{background:#f3f3f3}.FAILED{color:#b00}
.PASSED{color:#070}figure{margin:1em 0;display:inline-block}img{max-width:100%}"""


def markdown_table(table: Table) -> str:
    """A GitHub Markdown table; pipes escaped, line breaks as <br>."""
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", "<br>")
