"""The HTML report's page parts: style, the sort-and-filter script, escaped tables, and data-URI images.

Everything a page needs is inline (no CDN, no web fonts, no image files, no ``file://`` links), so the
report opens the same from a mail attachment, a shared folder or a Prefect run. Every text that came
from the store (classes, cameras, lines, paths) is escaped: a class named ``<script>`` stays text.
Tables sort on a header click (numbers and times by their ``data-v`` value, text by locale) and
filter on typing in the box above them (any cell containing the text, case-insensitive).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #c0392b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px; max-width: 1280px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 2px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .value { font-size: 26px; font-weight: 600; } .card .label { color: var(--muted); }
.chart { max-width: 100%; height: auto; display: block; margin: 8px 0 16px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th::after { content: " \\2195"; color: #bcccdc; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--ink); }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--ink); }
input.filter { font: inherit; padding: 5px 8px; width: 320px; max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
.count { color: var(--muted); margin-left: 10px; }
img.thumb { width: 240px; height: auto; border-radius: 4px; cursor: zoom-in; display: block; }
img.thumb.big { width: auto; max-width: 100%; cursor: zoom-out; }
.missing { color: var(--accent); }
.note { color: var(--muted); font-size: 13px; }
"""

SCRIPT = """
(function () {
  function value(row, col, numeric) {
    var cell = row.cells[col], v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent.trim();
    return numeric ? (v === '' ? -Infinity : parseFloat(v)) : v;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells, body = table.tBodies[0];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending', numeric = th.getAttribute('data-type') === 'number';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a, col, numeric), y = value(b, col, numeric);
          var order = numeric ? (x < y ? -1 : x > y ? 1 : 0) : String(x).localeCompare(String(y), undefined, {numeric: true});
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.querySelectorAll('input.filter').forEach(function (input) {
    var table = document.getElementById(input.getAttribute('data-table'));
    var count = document.getElementById(input.getAttribute('data-count'));
    input.addEventListener('input', function () {
      var text = input.value.trim().toLowerCase(), rows = table.tBodies[0].rows, shown = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var keep = !text || row.textContent.toLowerCase().indexOf(text) >= 0;
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      count.textContent = shown + ' of ' + rows.length + ' rows';
    });
  });
  document.querySelectorAll('img.thumb').forEach(function (img) {
    img.addEventListener('click', function () { img.classList.toggle('big'); });
  });
})();
"""


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute (None shows as an empty cell)."""
    return "" if value is None else html.escape(str(value), quote=True)


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image(payload: bytes, mime: str, alt: str, css: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img class="{css}" src="{data_uri(payload, mime)}" alt="{esc(alt)}"{size}>'


@dataclass(frozen=True)
class Cell:
    """A table cell: its shown text (escaped here) or ready-made HTML, a sort value, and whether it is a number."""

    text: object = None
    sort: object = None
    number: bool = False
    raw_html: str | None = None

    def render(self) -> str:
        key = "" if self.sort is None else f' data-v="{esc(self.sort)}"'
        kind = ' class="num"' if self.number else ""
        return f"<td{kind}{key}>{self.raw_html if self.raw_html is not None else esc(self.text)}</td>"


_HEADS = {"text": "", "number": " class=num data-type=number", "time": " data-type=number"}  # a time sorts by its data-v seconds


def table(table_id: str, headers: Sequence[tuple[str, str]], rows: Sequence[Sequence[Cell]], sortable: bool = True) -> str:
    """A table; ``headers`` are (title, kind: text, number or time) pairs. Sortable tables get a filter box and a row count above them."""
    head = "".join(f"<th{_HEADS[kind]}>{esc(title)}</th>" for title, kind in headers)
    body = "\n".join("<tr>" + "".join(cell.render() for cell in row) + "</tr>" for row in rows)
    grid = f'<table id="{table_id}"{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'
    if not sortable:
        return grid
    box = (f'<input class="filter" type="search" placeholder="filter rows (any column)" data-table="{table_id}" '
           f'data-count="{table_id}-count" aria-label="filter {table_id}">'
           f'<span class="count" id="{table_id}-count">{len(rows)} of {len(rows)} rows</span>')  # fmt: skip
    return f"<div>{box}</div>\n{grid}"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n")  # fmt: skip
