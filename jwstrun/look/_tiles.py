"""The report's tile map: the sky tiles of a tiled image3 (``jwstrun image3 --tile-size``)
as a grid, one cell per tile, showing which ran, failed, or held no data.

Read from the manifest alone: each ``image3-tile`` record is named
``<product>_t<row><column>`` (:func:`jwstrun.mosaic.tiles.tile_name`), so the map
needs neither the grid nor the products.  Rows are drawn top down with the grid's
last row first, as the mosaic is displayed (pixel y up).  Plain HTML and CSS.
"""

from __future__ import annotations

import re

from ._html import _e

__all__ = ["tile_map_section", "TILE_STAGE"]

TILE_STAGE = "image3-tile"
_NAME = re.compile(r"^(?P<product>.+)_t(?P<digits>\d+)$")

#: status -> (CSS class, what the legend says)
_STATES = {
    "ok": ("tm-ok", "ran"),
    "skipped": ("tm-ok", "ran"),
    "failed": ("tm-failed", "failed"),
    "empty": ("tm-empty", "no data (no exposure overlaps it)"),
}

TILE_CSS = """
.tilemap{border-collapse:separate;border-spacing:2px;margin:.4em 0}
.tilemap td{width:22px;height:22px;padding:0;border:1px solid #c9cfda;font-size:.6em;
  text-align:center;color:#fff}
.tm-ok{background:#2e8540} .tm-failed{background:#b3261e} .tm-empty{background:#eef1f6}
.tilemap td.tm-empty{color:#667085} .tilemap td.tm-none{border:0;background:none}
.tm-key{display:inline-block;width:12px;height:12px;border:1px solid #c9cfda;
  vertical-align:middle;margin:0 4px 0 10px}
"""


def _index(name: str) -> tuple[int, int] | None:
    digits = name[1:]
    if len(digits) % 2 or not digits.isdigit():
        return None
    half = len(digits) // 2
    return int(digits[:half]), int(digits[half:])


def _tiles_by_product(records) -> dict[str, dict[tuple[int, int], tuple[str, str]]]:
    """product -> (row, column) -> (status, task id), from the image3-tile records."""
    found: dict[str, dict] = {}
    for record in records:
        if record.pipeline != TILE_STAGE or not record.product:
            continue
        match = _NAME.match(record.product)
        index = _index("t" + match["digits"]) if match else None
        if index is None:
            continue
        found.setdefault(match["product"], {})[index] = (record.status or "?", record.task_id)
    return found


def _map(tiles: dict) -> str:
    rows = max(i for i, _ in tiles) + 1
    cols = max(j for _, j in tiles) + 1
    lines = []
    for iy in reversed(range(rows)):  # the grid's last row on top, as the mosaic is shown
        cells = []
        for ix in range(cols):
            status, task = tiles.get((iy, ix), (None, None))
            css = _STATES.get(status, ("tm-none", ""))[0]
            title = f"t{iy:03d}{ix:03d}: {status}" if status else "not planned"
            mark = "&#x2715;" if status == "failed" else ""
            cells.append(f"<td class='{css}' title='{_e(title)}' data-tile='{iy},{ix}' "
                         f"data-status='{_e(status or 'none')}'>{mark}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return "<table class='tilemap'>" + "".join(lines) + "</table>"


def tile_map_section(records) -> str:
    """The "Tiles" section (an empty string when the run has no tiles)."""
    products = _tiles_by_product(records)
    if not products:
        return ""
    parts = ["<h2 id='tiles'>Tiles</h2>",
             "<p class='muted'>One cell per sky tile of the grid (row 0 at the bottom, as the "
             "mosaic is shown; hover for the tile's name)."
             + "".join(f"<span class='tm-key {css}'></span>{_e(text)}"
                       for css, text in dict(_STATES.values()).items()) + "</p>"]
    for product, tiles in sorted(products.items()):
        counts = {}
        for status, _ in tiles.values():
            key = _STATES.get(status, (None, status))[1]
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        parts.append(f"<h3><code>{_e(product)}</code></h3><p>{len(tiles)} tiles: "
                     f"{_e(summary)}</p>" + _map(tiles))
    return "".join(parts)
