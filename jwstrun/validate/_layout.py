"""Structure checks of a FITS product: completeness, extensions, dtypes, shapes, ASDF tree.

All of it reads headers (and the ASDF extension's bytes), no pixel data.
"""

from __future__ import annotations

from ..products import PRODUCT_TYPES
from ._asdf import _parse_asdf_bytes, _read_asdf_hdu
from ._hdus import _Hdu, _table_columns
from ._schemas import _CALIBRATED_TYPES, _NEEDS_WCS, PRODUCT_LAYOUTS, schema_layout


def _check_truncation(path, size, hdus, report):
    expected = max((h.end for h in hdus), default=0)
    if expected > size:
        cut = [h.name for h in hdus if h.end > size]
        report.error(
            "truncated",
            f"{path}: truncated: {size} bytes on disk, its headers describe {expected} "
            f"(data of {', '.join(cut)} cut off). The write or copy did not finish; re-create it.",
        )


def _check_layout(ptype, primary, hdus, report):
    """DATAMODL, an empty primary HDU, the extensions, their dtypes, dims and shapes."""
    model, required, expected = PRODUCT_LAYOUTS[ptype]
    _check_datamodel(ptype, primary, report)
    if hdus and hdus[0].shape:
        report.error(
            "primary-data",
            f"primary HDU holds data of shape {hdus[0].shape}; JWST products keep the "
            "primary HDU empty (NAXIS = 0).",
        )
    by_name = _extensions_by_name(hdus, report)
    for name in required:
        if name not in by_name:
            report.error("missing-extension", f"required extension {name} is missing.")
    for name in expected:
        if name not in by_name:
            report.warn(
                "missing-extension",
                f"extension {name} is missing (current jwst writes it for '{ptype}').",
            )
    _check_schema_types(ptype, model, by_name, report)
    sci = by_name.get("SCI")
    if sci is not None and sci.shape:
        _check_shapes(sci, by_name, report)
        if ptype.endswith("ints") and len(sci.shape) == 3:
            _check_nints(primary, sci, by_name.get("INT_TIMES"), report)
    if ptype in _CALIBRATED_TYPES and "AREA" not in by_name:
        _report_missing_area(primary, report)


def _check_datamodel(ptype, primary, report):
    datamodl = str(primary.get("DATAMODL", "") or "").strip()
    allowed_models = PRODUCT_TYPES[ptype][1]
    if not datamodl:
        report.warn("datamodel", "primary header has no DATAMODL keyword.")
    elif allowed_models and datamodl not in allowed_models:
        report.error(
            "datamodel",
            f"DATAMODL is {datamodl} but a '{ptype}' product is a "
            f"{' or '.join(allowed_models)}.",
        )


def _extensions_by_name(hdus, report) -> dict[str, _Hdu]:
    """EXTNAME -> first HDU of that name; a warning for each repeated name but ASDF."""
    by_name: dict[str, _Hdu] = {}
    for h in hdus[1:]:
        if h.name in by_name and h.name != "ASDF":
            report.warn("duplicate-extension", f"extension {h.name} appears more than once.")
        by_name.setdefault(h.name, h)
    return by_name


def _check_schema_types(ptype, model, by_name, report):
    """Each extension the datamodel's schema knows: image or table, dtype, dimensions."""
    schema = schema_layout(model)
    for name, h in by_name.items():
        spec = schema.get(name)
        if spec is None:
            continue
        datatype = spec["datatype"]
        if isinstance(datatype, list):  # a table such as INT_TIMES
            _check_table(name, h, datatype, report)
            continue
        if h.kind != "image":
            report.error("dtype", f"{name} should be an image extension, found a table.")
            continue
        if datatype and h.dtype != datatype:
            report.error(
                "dtype", f"{name} has dtype {h.dtype}, the {model} schema says {datatype}."
            )
        ndim = len(h.shape)
        if spec["ndim"] and ndim != spec["ndim"]:
            report.error(
                "ndim",
                f"{name} is {ndim}-D {h.shape}, a '{ptype}' product needs {spec['ndim']}-D "
                f"({'nints x ny x nx' if spec['ndim'] == 3 else 'ny x nx'}).",
            )
        elif spec["max_ndim"] and ndim > spec["max_ndim"]:
            report.error("ndim", f"{name} is {ndim}-D, at most {spec['max_ndim']}-D allowed.")


def _check_shapes(sci, by_name, report):
    """Per-pixel extensions match SCI; AREA and CON match its image size."""
    same_shape = ("ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT", "WHT")
    for name in same_shape:
        h = by_name.get(name)
        if h is not None and h.kind == "image" and h.shape and h.shape != sci.shape:
            report.error("shape", f"{name} shape {h.shape} differs from SCI shape {sci.shape}.")
    for name in ("AREA", "CON"):
        h = by_name.get(name)
        if h is not None and h.kind == "image" and h.shape and h.shape[-2:] != sci.shape[-2:]:
            report.error(
                "shape",
                f"{name} image size {h.shape[-2:]} differs from SCI image size "
                f"{sci.shape[-2:]}.",
            )


def _report_missing_area(primary, report):
    area_ref = str(primary.get("R_AREA", "") or "").strip()
    if area_ref and area_ref.upper() != "N/A":
        report.error(
            "missing-extension",
            f"AREA extension is missing although photom used the area reference {area_ref}.",
        )
    else:
        report.warn(
            "missing-extension",
            "no AREA extension: no pixel-area reference was used (R_AREA "
            f"{area_ref or 'not set'}), photom took the average area from the photom file.",
        )


def _check_table(name, h, columns_spec, report):
    if h.kind != "table":
        report.error("dtype", f"{name} should be a binary table, found an image.")
        return
    columns = _table_columns(h.header)
    for col in columns_spec:
        cname, ctype = col["name"], col.get("datatype")
        if cname not in columns:
            report.error("table-columns", f"{name} table lacks column {cname}.")
        elif ctype and columns[cname] != ctype:
            report.error(
                "table-columns", f"{name} column {cname} is {columns[cname]}, schema says {ctype}."
            )


def _check_nints(primary, sci, int_times, report):
    nplanes = sci.shape[0]
    try:
        start = int(primary.get("INTSTART") or 0)
        end = int(primary.get("INTEND") or 0)
        nints = int(primary.get("NINTS") or 0)
    except (TypeError, ValueError):
        return
    expected = end - start + 1 if start and end else nints
    if expected and nplanes != expected:
        report.warn(
            "nints",
            f"SCI has {nplanes} integrations but the header says {expected} "
            "(NINTS, or INTEND - INTSTART + 1 for a segment).",
        )
    if int_times is not None and int_times.kind == "table" and int_times.shape:
        rows = int_times.shape[0]
        if rows < nplanes:
            report.warn("nints", f"INT_TIMES has {rows} rows for {nplanes} integrations.")


def _check_asdf(ptype, primary, hdus, size, report):
    asdf_hdus = [h for h in hdus if h.name == "ASDF"]
    if not asdf_hdus:
        report.error(
            "asdf",
            "no ASDF extension: the file was not completely written (jwst writes the ASDF "
            "extension last) or was not written by stdatamodels. Re-create it.",
        )
        return
    h = asdf_hdus[-1]
    if h.end > size:
        report.error("asdf", "ASDF extension is cut off (file truncated).")
        return
    try:
        raw = _read_asdf_hdu(h.hdu)
        tree = _parse_asdf_bytes(raw)
    except ValueError as exc:
        report.error("asdf", f"ASDF extension is unreadable: {exc}.")
        return
    except Exception as exc:  # noqa: BLE001 - e.g. KeyError for a table without ASDF_METADATA
        report.error("asdf", f"ASDF extension is unreadable ({type(exc).__name__}: {exc}).")
        return

    _check_asdf_sources(tree, hdus, report)

    meta = tree.get("meta") if isinstance(tree.get("meta"), dict) else {}
    wcs_done = str(primary.get("S_WCS", "")).strip().upper() == "COMPLETE"
    if (ptype in _NEEDS_WCS or wcs_done) and not meta.get("wcs"):
        report.error(
            "wcs",
            "no WCS in the ASDF extension (meta.wcs): assign_wcs did not run or its result "
            "was not saved.",
        )


def _check_asdf_sources(tree, hdus, report):
    """Each array the ASDF tree keeps in a FITS extension: that extension and its shape."""
    present = {x.name: x for x in hdus}
    for attribute, node in tree.items():
        if not isinstance(node, dict):
            continue
        source = str(node.get("source", ""))
        if not source.startswith("fits:"):
            continue
        extname = source[5:].split(",")[0].strip().upper()
        target = present.get(extname)
        if target is None:
            report.error(
                "asdf",
                f"ASDF tree refers to extension {extname} ({attribute}) that the file does "
                "not have.",
            )
        elif not node.get("shape"):
            continue
        elif target.kind == "table":
            rows = target.shape[0] if target.shape else 0
            if list(node["shape"])[:1] != [rows]:
                report.error(
                    "asdf",
                    f"ASDF tree says {attribute} has {list(node['shape'])[:1]} rows, "
                    f"table {extname} has {rows}.",
                )
        elif tuple(node["shape"]) != target.shape:
            report.error(
                "asdf",
                f"ASDF tree says {attribute} has shape {tuple(node['shape'])}, "
                f"extension {extname} has {target.shape}.",
            )
