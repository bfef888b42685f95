"""The report's comparison section (``jwstrun report OUTDIR --compare OTHER``): what
:func:`jwstrun.compare.diff_runs` finds between this run (A) and OTHER (B), as
``jwstrun diff OUTDIR OTHER`` prints it."""

from __future__ import annotations

from pathlib import Path

from ._html import _e

__all__ = ["compare_section"]


def compare_section(run_dir: Path, other: Path, tolerance: float = 0.0) -> str:
    """The section's HTML (``<h2 id='compare'>``): the verdict, the settings that differ
    and, per product that differs, each part's difference."""
    from ..compare import diff_runs
    from ..compare.text import product_lines

    result = diff_runs(run_dir, other, tolerance=tolerance)
    verdict = "identical" if result.identical else "different"
    parts = [
        "<h2 id='compare'>Compared with another run</h2>",
        f"<p>A: this run, <code>{_e(result.run_a)}</code>; B: <code>{_e(result.run_b)}</code> "
        "(<code>jwstrun diff A B</code>). "
        f"<b class='{'ok' if result.identical else 'failed'}'>{verdict}</b>: "
        f"{result.n_compared} product(s) compared, {len(result.changed_products)} differ, "
        f"{len(result.only_in_a)} only in A, {len(result.only_in_b)} only in B; "
        f"{len(result.settings)} setting(s) differ.</p>",
    ]
    if result.settings:
        parts.append(
            "<table class='settings'><tr><th>task</th><th>kind</th><th>name</th><th>A</th>"
            "<th>B</th></tr>" + "".join(
                f"<tr class='setting'><td>{_e(row['task'])}</td><td>{_e(row['kind'])}</td>"
                f"<td><code>{_e(row['name'])}</code></td><td><code>{_e(repr(row['a']))}</code>"
                f"</td><td><code>{_e(repr(row['b']))}</code></td></tr>"
                for row in result.settings) + "</table>")
    if result.products:
        rows = []
        for product in result.products:
            lines = [(p, t) for p, t in product_lines(product) if t != "same"]
            for i, (part, text) in enumerate(lines):
                name = (f"<td rowspan='{len(lines)}'><code>{_e(product['name'])}</code></td>"
                        if i == 0 else "")
                rows.append(f"<tr class='product'>{name}<td>{_e(part)}</td><td>{_e(text)}</td>"
                            "</tr>")
        parts.append("<table class='products'><tr><th>product</th><th>part</th>"
                     "<th>difference (B - A)</th></tr>" + "".join(rows) + "</table>")
    for label, names in (("only in A", result.only_in_a), ("only in B", result.only_in_b),
                         ("tasks only in A", result.tasks_only_in_a),
                         ("tasks only in B", result.tasks_only_in_b)):
        if names:
            parts.append(f"<p><b>{label}</b>: " + ", ".join(
                f"<code>{_e(n)}</code>" for n in names) + "</p>")
    return "".join(parts)
