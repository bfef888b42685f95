"""One pair of products of :func:`jwstrun.compare.diff_runs` in words, as ``jwstrun diff``
prints it and the HTML report shows it (``jwstrun report --compare``)."""

from __future__ import annotations

__all__ = ["product_lines"]


def product_lines(product: dict) -> list[tuple[str, str]]:
    """(part, text) lines of one pair of products (an entry of :attr:`RunDiff.products`)."""
    if product.get("missing"):
        return [("file", "missing: " + ", ".join(product["missing"]))]
    lines = []
    for ext, stats in (product.get("arrays") or {}).items():
        if not stats["differs"]:
            lines.append((ext, "same"))
        elif "missing_in" in stats:
            lines.append((ext, f"missing in {stats['missing_in'].upper()}"))
        elif "shape_a" in stats:
            lines.append((ext, f"shape {stats['shape_a']} -> {stats['shape_b']}"))
        elif "bits" in stats:
            bits = ", ".join(f"{b['name']} +{b['gained']}/-{b['lost']}" for b in stats["bits"])
            lines.append((ext, f"{stats['n_differ']} of {stats['n_pixels']} px changed: {bits}"))
        else:
            lines.append((ext, f"{stats['n_differ']} of {stats['n_pixels']} px differ; max "
                          f"|diff| {stats['max_abs_diff']:.4g}, median {_g(stats['median_diff'])}"))
    for row in (product.get("headers") or {}).get("keywords") or ():
        lines.append(("header", f"{row['hdu']} {row['key']}: {row['a']!r} -> {row['b']!r}"))
    wcs = product.get("wcs")
    if wcs:
        text = wcs.get("error") or (f"max offset {wcs['max_offset_arcsec']:.4g} arcsec (centre "
                                    f"{wcs['offsets_arcsec']['centre']:.4g})")
        lines.append(("WCS", text))
    cat = product.get("catalog")
    if cat:
        lines.append(("catalog", f"{cat['n_a']} -> {cat['n_b']} sources, {cat['n_matched']} "
                      f"matched; median flux ratio {_g(cat['median_flux_ratio'])}, median "
                      f"offset {_g(cat['median_offset_arcsec'])} arcsec"))
    if not lines:
        lines.append(("file", "same bytes" if product["bytes_equal"] else "bytes differ"))
    return lines


def _g(value) -> str:
    return "-" if value is None else f"{value:.4g}"
