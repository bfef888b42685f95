"""The report page's building blocks: style sheet, escaping, numbers, embedded plots
(private to :mod:`jwstrun.look`; the report's modules import these names)."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;
     color:#1d2433;background:#fff;max-width:1240px}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;
     border-bottom:1px solid #d5dae3;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.86em;margin:.4em 0}
th,td{border:1px solid #d5dae3;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f6} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.when{white-space:nowrap}
.ok{color:#137333;font-weight:600} .failed{color:#b3261e;font-weight:600}
.skipped{color:#7a5b00;font-weight:600} .muted{color:#667085}
.warn{color:#7a5b00} .err{color:#b3261e}
pre{background:#f6f8fb;border:1px solid #e2e6ee;padding:8px;font-size:.8em;overflow:auto;
    max-height:480px}
details{margin:.2em 0} summary{cursor:pointer}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:236px;font-size:.75em;word-break:break-all}
figure img{width:220px;height:auto;border:1px solid #c9cfda;background:#5b6f8a;display:block}
.plot img{max-width:100%;height:auto;border:1px solid #e2e6ee}
.kv td:first-child{font-weight:600;white-space:nowrap}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, fmt: str = ".2f", unit: str = "") -> str:
    if value is None:
        return "-"
    try:
        return f"{format(float(value), fmt)}{unit}"
    except (TypeError, ValueError):
        return _e(value)


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _fig_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


def _plot_figure(width=6.4, height=3.6):
    """A figure for the report's plots, with fixed margins in inches (room for tick
    labels, axis labels and a two-line title): tight_layout would draw it twice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                        top=1 - 0.35 / height, wspace=0.8 / (width / 2))
    return fig


def _rel(target: Path, start: Path) -> str:
    from urllib.parse import quote

    return quote(os.path.relpath(target, start).replace(os.sep, "/"))
