"""See the results: PNG quick looks, the static HTML run report, hand-off to viewers.

* :func:`preview_file` / :func:`preview_files` draw rate, cal, crf and i2d
  products (and their per-integration variants) with a robust stretch, a
  colour bar in the product's BUNIT, DQ-flagged pixels on request, the
  ``_cat.ecsv`` sources on an i2d, and the i2d's WHT and CON maps.
* :func:`write_report` writes ``OUTDIR/jwstrun-report.html``: one page with no
  network resources and no JavaScript -- task table, timings, memory,
  validation, CRDS references, resolved parameters, thumbnails linking to full
  previews, tweakreg residuals, skymatch levels and catalog magnitudes.  The
  previews are normally drawn by the workers as each task ends
  (:mod:`jwstrun._previews`); the report reuses them.
* :func:`view_file` opens a product in ginga, glue or ds9;
  :func:`load_in_viewer` loads it through the viewer's own API without a
  window (what ``jwstrun view --check`` and the tests use).

matplotlib, astropy and numpy are imported inside the functions (``jwstrun
--help`` stays fast).  Figures are drawn on matplotlib's Agg canvas directly,
never through pyplot, so no display is needed and a caller's interactive
backend (a Jupyter session) is left alone.
"""

from __future__ import annotations

import base64
import errno
import html
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, JwstrunError, OutputError
from .products import product_basename, product_type, read_primary_header

__all__ = [
    "PREVIEW_TYPES",
    "STRETCHES",
    "VIEWERS",
    "REPORT_NAME",
    "PREVIEW_DIRNAME",
    "NAN_COLOUR",
    "Preview",
    "preview_file",
    "preview_files",
    "find_run_dir",
    "parse_tweakreg_log",
    "parse_skymatch_log",
    "write_report",
    "viewer_status",
    "load_in_viewer",
    "view_file",
]

log = logging.getLogger(__name__)

#: Product types that have an image to look at.
PREVIEW_TYPES = (
    "rate", "rateints", "bsub", "bsubints", "cal", "calints", "crf", "crfints", "i2d",
)
#: ``asinh``: asinh stretch between the 0.5 and 99.8 percentiles (faint sky and
#: bright cores both visible); ``zscale``: IRAF/ds9 zscale limits, linear.
STRETCHES = ("asinh", "zscale")
REPORT_NAME = "jwstrun-report.html"
PREVIEW_DIRNAME = "previews"
#: images the report shows by default (``jwstrun report --max-previews``)
MAX_PREVIEWS = 60

#: colour of pixels with no data (NaN) in previews and thumbnails: slate blue, not black
NAN_COLOUR = "#5b6f8a"

# Images are block-averaged to at most this many pixels on their longer side before
# drawing: about the size of the axes in the 800-pixel-wide preview figure.
_DISPLAY_PIXELS = 700
_THUMB_PIXELS = 220
_DQ_DO_NOT_USE = 1
_DQ_OUTLIER = 16
# Catalog-to-truth match radius: tweakreg aligns relative to the first exposure,
# so the mosaic keeps that exposure's absolute pointing error (~0.1" simulated).
_MATCH_ARCSEC = 0.25


# --------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------
@dataclass
class Preview:
    """The PNGs written for one product."""

    source: Path
    product_type: str
    files: list[Path] = field(default_factory=list)
    bunit: str = ""
    integration: int | None = None
    n_catalog_sources: int | None = None
    dq_counts: dict[str, int] | None = None
    thumbnail: bytes | None = None  # small JPEG of the image alone (the report embeds it)

    def to_dict(self) -> dict:
        return {
            "source": str(self.source),
            "product_type": self.product_type,
            "files": [str(p) for p in self.files],
            "bunit": self.bunit,
            "integration": self.integration,
            "n_catalog_sources": self.n_catalog_sources,
            "dq_counts": self.dq_counts,
        }


@dataclass
class _Image:
    path: Path
    ptype: str
    header: object  # primary header
    sci: object  # 2-D float array
    bunit: str
    dq: object = None
    wht: object = None
    con: object = None
    integration: int | None = None
    nints: int = 1


def _kind_text(ptype: str | None) -> str:
    return f"a _{ptype} product" if ptype else "not a JWST image product"


def _check_previewable(path: Path) -> str:
    """The product type of ``path`` if preview can draw it; InputError naming the file if not."""
    ptype = product_type(path)  # the suffix first: a _cat.ecsv is not "a broken FITS file"
    if ptype is None or ptype in PREVIEW_TYPES:
        # the header too: a junk or truncated file fails here, before anything is drawn
        ptype = product_type(path, read_primary_header(path))
    if ptype not in PREVIEW_TYPES:
        raise InputError(
            f"{path}: is {_kind_text(ptype)}; preview draws rate, rateints, cal, calints, "
            "crf and i2d images. Give those files (catalogs are drawn on their _i2d)."
        )
    return ptype


def _load_image(path: Path, integration: int | None, want_dq: bool) -> _Image:
    """Read SCI (one integration), DQ and the i2d maps; InputError naming the file."""
    import numpy as np
    from astropy.io import fits

    ptype = _check_previewable(path)
    header = read_primary_header(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            names = [h.name for h in hdul]
            if "SCI" not in names or hdul["SCI"].data is None:
                raise InputError(
                    f"{path}: has no SCI image extension. Is it a complete JWST product? "
                    f"Check it with 'jwstrun validate {path}'."
                )
            sci_hdu = hdul["SCI"]
            data = np.asarray(sci_hdu.data)
            bunit = str(sci_hdu.header.get("BUNIT", "") or "").strip()
            dq = np.asarray(hdul["DQ"].data) if want_dq and "DQ" in names and hdul["DQ"].data is not None else None
            wht = np.asarray(hdul["WHT"].data) if ptype == "i2d" and "WHT" in names else None
            con = np.asarray(hdul["CON"].data) if ptype == "i2d" and "CON" in names else None
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError/ValueError/TypeError for damaged data
        raise InputError(
            f"{path}: cannot read the image data ({exc}). The file is damaged or incomplete; "
            "re-create it."
        ) from exc
    nints = 1
    chosen = None
    if data.ndim == 3:
        nints = data.shape[0]
        chosen = integration or 1
        if not 1 <= chosen <= nints:
            raise InputError(
                f"{path}: has {nints} integration(s); --integration must be between 1 and {nints}."
            )
        data = data[chosen - 1]
        if dq is not None and dq.ndim == 3:
            dq = dq[chosen - 1]
    elif data.ndim != 2:
        raise InputError(f"{path}: SCI has {data.ndim} dimensions; preview draws 2-D or 3-D images.")
    elif integration not in (None, 1):
        log.info("%s: a 2-D image; --integration %s ignored.", path.name, integration)
    return _Image(path=path, ptype=ptype, header=header, sci=data.astype("float32", copy=False),
                  bunit=bunit, dq=dq, wht=wht, con=con, integration=chosen, nints=nints)


def _fold(arr, factor: int, op):
    """Combine each ``factor`` x ``factor`` block with the ufunc ``op`` (np.add,
    np.maximum, np.bitwise_or) through strided slices: 5x faster than a reduction
    over a 4-D view of a full frame."""
    rows = arr[0::factor]
    for k in range(1, factor):
        rows = op(rows, arr[k::factor])
    out = rows[:, 0::factor]
    for k in range(1, factor):
        out = op(out, rows[:, k::factor])
    return out


def _block(arr, factor: int, how: str):
    """Shrink an image by an integer factor (mean of finite values, max, or OR of bits)."""
    import numpy as np

    if factor <= 1:
        return arr
    ny, nx = (arr.shape[0] // factor) * factor, (arr.shape[1] // factor) * factor
    view = arr[:ny, :nx]
    if how == "or":
        return _fold(view, factor, np.bitwise_or)
    if how == "max":
        return _fold(view, factor, np.maximum)
    # the mean of the finite values; a block without any stays NaN (no data)
    finite = np.isfinite(view)
    total = _fold(np.where(finite, view, np.float32(0)), factor, np.add)
    count = _fold(finite.astype("uint16"), factor, np.add)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype("float32", copy=False)


def _display_factor(shape, pixels: int) -> int:
    """The block size that shrinks an image to at most ``pixels`` on its longer side."""
    return max(1, -(-max(shape) // pixels))


def _rgba(data, norm, cmap):
    """The colour-mapped image as uint8 RGBA (NaN in the colormap's 'bad' colour)."""
    import numpy as np

    return cmap(np.asarray(norm(data)), bytes=True)


def _norm(data, stretch: str):
    """An astropy ImageNormalize from the finite pixels (robust to NaN and hot pixels)."""
    import numpy as np
    from astropy.visualization import (
        AsinhStretch,
        AsymmetricPercentileInterval,
        ImageNormalize,
        LinearStretch,
        ZScaleInterval,
    )

    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return ImageNormalize(vmin=0, vmax=1, stretch=LinearStretch())
    if finite.size > 400_000:  # limits from a sample: same answer, much faster
        finite = finite[:: finite.size // 400_000 + 1]
    if stretch == "zscale":
        vmin, vmax = ZScaleInterval().get_limits(finite)
        stretch_obj = LinearStretch()
    else:
        vmin, vmax = AsymmetricPercentileInterval(0.5, 99.8).get_limits(finite)
        stretch_obj = AsinhStretch(a=0.05)
    if not vmax > vmin:
        vmax = vmin + 1.0
    # No clipping: the colormap shows values beyond the limits in its end colours
    # anyway, and a clipping norm would pile the colour bar's out-of-range ticks up
    # on its ends, where their labels overlap.
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch_obj, clip=False)


def _figure(shape, extra_height: float = 0.9):
    """A matplotlib Figure on an Agg canvas sized to the image aspect."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ny, nx = shape
    width = 8.0
    height = min(max(width * ny / max(nx, 1) * 0.9 + extra_height, 3.0), 12.0)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    # Fixed margins (tight_layout would draw the whole figure an extra time); the right
    # one holds the colour bar's tick labels and its label, which used to be cut off.
    fig.subplots_adjust(left=0.09, right=0.88, bottom=0.07, top=1 - 0.6 / height)
    return fig


def _write_atomically(dest: Path, write) -> None:
    """``write(tmp_path)``, then rename: a killed run never leaves a half-written preview."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_figure(fig, dest: Path) -> None:
    """Draw a figure and write it as an RGB PNG, atomically."""
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    # zlib level 1: noisy sky hardly compresses at higher levels, which take 2-3x longer
    _write_atomically(dest, lambda tmp: Image.fromarray(rgb).save(tmp, format="png",
                                                                  compress_level=1))


def _title(image: _Image, what: str = "") -> str:
    h = image.header
    elements = " ".join(
        str(h.get(k, "")).strip() for k in ("INSTRUME", "DETECTOR", "FILTER", "PUPIL")
        if str(h.get(k, "") or "").strip() not in ("", "N/A", "NONE")
    )
    kind = f"_{image.ptype}"
    if image.integration is not None:
        kind += f", integration {image.integration} of {image.nints}"
    return f"{image.path.name}{what}\n{elements}  ({kind})"


def _sky_axes_note(ax) -> None:
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")


def _catalog_for(path: Path) -> Path | None:
    candidate = path.with_name(product_basename(path) + "_cat.ecsv")
    return candidate if candidate.exists() else None


def _read_catalog_xy(path: Path):
    """x, y (0-based pixels) of a source_catalog ECSV; InputError naming the file."""
    import numpy as np
    from astropy.table import Table

    try:
        # The two plain float columns through the fast C reader: the ECSV reader's
        # YAML header (every column described) takes 10x longer than the data.
        table = Table.read(path, format="ascii.fast_basic", include_names=["xcentroid", "ycentroid"])
    except Exception:  # noqa: BLE001 - the ECSV reader says what is wrong
        table = None
    try:
        if table is None or len(table.colnames) != 2 or table["xcentroid"].dtype.kind != "f":
            table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
        raise InputError(f"{path}: cannot read the catalog ({exc}). Re-run image3 to re-create it.") from exc
    if "xcentroid" not in table.colnames or "ycentroid" not in table.colnames:
        raise InputError(f"{path}: has no xcentroid/ycentroid columns; is it a source_catalog product?")
    return np.asarray(table["xcentroid"], float), np.asarray(table["ycentroid"], float)


def _draw_main(image: _Image, dest: Path, stretch: str, show_dq: bool, catalog: Path | None,
               result: Preview) -> None:
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Patch

    # Block-average to the size the image is drawn at, colour-map it here and hand
    # matplotlib ready RGBA pixels: drawing then costs the same for any detector.
    factor = _display_factor(image.sci.shape, _DISPLAY_PIXELS)
    shown = _block(image.sci, factor, "mean")
    norm = _norm(shown, stretch)
    cmap = _cmap("gray")
    rgba = _rgba(shown, norm, cmap)
    result.thumbnail = _thumbnail_jpeg(rgba)  # the image alone: before the DQ colours
    handles = []
    if show_dq:
        if image.dq is None:
            note = "no DQ array in this product" if image.ptype == "i2d" else "no DQ extension"
            handles.append(Patch(color="none", label=note))
            result.dq_counts = {}
        else:
            dq = image.dq.astype("uint32", copy=False)
            outlier = (dq & _DQ_OUTLIER) > 0
            dnu = ((dq & _DQ_DO_NOT_USE) > 0) & ~outlier
            other = (dq > 0) & ~outlier & ~dnu
            result.dq_counts = {"OUTLIER": int(outlier.sum()), "DO_NOT_USE": int(dnu.sum()),
                                "other flags": int(other.sum())}
            if factor > 1:  # a flagged pixel stays visible after shrinking
                outlier, dnu, other = (_block(m.view("uint8"), factor, "max") > 0
                                       for m in (outlier, dnu, other))
            colours = {"OUTLIER": (1.0, 0.55, 0.0), "DO_NOT_USE": (0.95, 0.1, 0.1),
                       "other flags": (0.1, 0.8, 0.95)}
            for name, mask in (("other flags", other), ("DO_NOT_USE", dnu), ("OUTLIER", outlier)):
                # the flag colour at 85 % opacity over the image, as an overlay would be
                blended = 0.85 * 255 * np.asarray(colours[name]) + 0.15 * rgba[mask, :3]
                rgba[mask, :3] = np.round(blended).astype("uint8")
            for name, count in result.dq_counts.items():
                handles.append(Patch(color=colours[name], label=f"{name}: {count}"))
    fig = _figure(shown.shape)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(rgba, origin="lower", interpolation="nearest",
              extent=(-0.5, image.sci.shape[1] - 0.5, -0.5, image.sci.shape[0] - 0.5))
    # Ticks evenly spaced in the stretched scale: asinh's default ticks crowd at the top.
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046, pad=0.02,
                       ticks=norm.inverse(np.linspace(0, 1, 7)), format="%.3g")
    bar.set_label(image.bunit or "(no BUNIT)")
    if catalog is not None:
        x, y = _read_catalog_xy(catalog)
        result.n_catalog_sources = int(len(x))
        ax.scatter(x, y, s=60, facecolors="none", edgecolors="#39ff14", linewidths=0.9)
        handles.append(Patch(facecolor="none", edgecolor="#39ff14",
                             label=f"{len(x)} sources ({catalog.name})"))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.7)
    ax.set_title(_title(image) + f"  stretch: {stretch}", fontsize=9)
    _sky_axes_note(ax)
    _save_figure(fig, dest)


def _cmap(name: str):
    import copy

    from matplotlib import colormaps

    cmap = copy.copy(colormaps[name])
    cmap.set_bad(NAN_COLOUR)
    return cmap


def _thumbnail_jpeg(rgba) -> bytes:
    """A small JPEG of the colour-mapped image alone (no axes, no figure), for the report:
    the preview's RGBA pixels box-averaged to _THUMB_PIXELS on the longer side."""
    from PIL import Image

    ny, nx = rgba.shape[:2]
    scale = min(1.0, _THUMB_PIXELS / max(ny, nx))
    size = (max(1, round(nx * scale)), max(1, round(ny * scale)))
    image = Image.fromarray(rgba[::-1, :, :3])  # row 0 at the bottom, as in the preview
    buffer = io.BytesIO()
    # JPEG: noisy sky compresses 5x better than PNG and the page stays small.
    image.resize(size, Image.Resampling.BOX).save(buffer, format="jpeg", quality=85)
    return buffer.getvalue()


def _draw_map(image: _Image, data, dest: Path, label: str, what: str, cmap_name: str,
              integer: bool = False) -> None:
    import numpy as np
    from matplotlib.cm import ScalarMappable

    shown = _block(data, _display_factor(data.shape, _DISPLAY_PIXELS), "max" if integer else "mean")
    cmap = _cmap(cmap_name)
    if integer:
        from matplotlib.colors import BoundaryNorm

        top = max(int(np.nanmax(shown)) if shown.size else 1, 1)
        norm = BoundaryNorm(np.arange(-0.5, top + 1.5, 1.0), 256)
        ticks = range(0, top + 1)
    else:
        norm = _norm(shown, "zscale")
        ticks = None
    fig = _figure(shown.shape)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(_rgba(shown, norm, cmap), origin="lower", interpolation="nearest",
              extent=(-0.5, data.shape[1] - 0.5, -0.5, data.shape[0] - 0.5))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046, pad=0.02,
                       ticks=ticks)
    bar.set_label(label)
    ax.set_title(_title(image, what), fontsize=9)
    _sky_axes_note(ax)
    _save_figure(fig, dest)


def _contributing_count(con):
    """Number of input images behind each i2d pixel: popcount over the CON bit planes."""
    import numpy as np

    con = np.asarray(con)
    if con.ndim == 2:
        con = con[None]
    bits = con.astype("uint32", copy=False)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(bits).sum(axis=0).astype("int32")
    count = np.zeros(con.shape[1:], dtype="int32")
    for plane in bits:
        for bit in range(32):
            count += ((plane >> bit) & 1).astype("int32")
    return count


def preview_file(
    path: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    stretch: str = "asinh",
    dq: bool = False,
    integration: int | None = None,
    catalog: str | os.PathLike | bool | None = None,
    maps: bool = True,
) -> Preview:
    """Write PNG quick looks of one product into ``outdir``.

    Parameters
    ----------
    path : path
        A rate, rateints, cal, calints, crf or i2d FITS product.
    outdir : path
        Directory for the PNGs (created if needed): ``<name>.png`` (``<name>_intN.png``
        for one integration of a 3-D product), and for an i2d ``<name>_wht.png`` and
        ``<name>_con.png``.
    stretch : {"asinh", "zscale"}
        Display stretch (see :data:`STRETCHES`).
    dq : bool
        Colour DQ-flagged pixels (OUTLIER, DO_NOT_USE, other flags) with counts.
    integration : int, optional
        1-based integration of a rateints/calints product (default: the first).
    catalog : path, bool or None
        Sources to circle on an i2d: a ``_cat.ecsv`` file, None to use the
        product's own ``<basename>_cat.ecsv`` when it exists, False for none.
    maps : bool
        Also draw the WHT and CON maps of an i2d.
    """
    if stretch not in STRETCHES:
        raise InputError(f"unknown stretch {stretch!r}; choose one of {', '.join(STRETCHES)}.")
    return _draw_preview(Path(path), Path(outdir), stretch=stretch, dq=dq,
                         integration=integration, catalog=catalog, maps=maps)


def _draw_preview(path: Path, outdir: Path, *, stretch: str = "asinh", dq: bool = False,
                  integration: int | None = None, catalog=None, maps: bool = True,
                  image_part: bool = True) -> Preview:
    """:func:`preview_file`; ``image_part=False`` draws only an i2d's WHT and CON maps
    (jwstrun._previews draws them before the catalog that the image shows exists)."""
    image = _load_image(path, integration, want_dq=dq)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{outdir}: cannot create the preview directory ({exc.strerror}). Choose another -o DIR."
        ) from exc
    cat_path: Path | None = None
    if image_part and catalog is None:
        cat_path = _catalog_for(path) if image.ptype == "i2d" else None
    elif image_part and catalog is not False:
        cat_path = Path(catalog)
        if not cat_path.exists():
            raise InputError(f"{cat_path}: catalog not found. Check the path.")
    stem = path.name.removesuffix(".fits")
    if image.integration is not None and image.nints > 1:
        stem += f"_int{image.integration}"
    result = Preview(source=path, product_type=image.ptype, bunit=image.bunit,
                     integration=image.integration)
    if image_part:
        main = outdir / f"{stem}.png"
        _draw_main(image, main, stretch, dq, cat_path, result)
        result.files.append(main)
    if maps and image.ptype == "i2d":
        if image.wht is not None:
            weight = str(image.header.get("RESWHT", "") or "").strip()
            dest = outdir / f"{stem}_wht.png"
            _draw_map(image, image.wht, dest, f"weight{f' ({weight})' if weight else ''}",
                      " [WHT]", "viridis")
            result.files.append(dest)
        if image.con is not None:
            dest = outdir / f"{stem}_con.png"
            _draw_map(image, _contributing_count(image.con), dest,
                      "input exposures contributing", " [CON]", "cividis", integer=True)
            result.files.append(dest)
    log.debug("previews of %s: %s", path.name, ", ".join(p.name for p in result.files))
    return result


def preview_files(files, outdir, **options) -> list[Preview]:
    """:func:`preview_file` for each file; every file is checked before any PNG is drawn."""
    from .runner import expand_inputs

    paths = expand_inputs(files)
    for path in paths:  # fail fast, naming the file, before spending time on drawing
        _check_previewable(path)
    return [preview_file(path, outdir, **options) for path in paths]


# --------------------------------------------------------------------------
# Reading a run: manifest, task logs, products
# --------------------------------------------------------------------------
def find_run_dir(outdir: str | os.PathLike) -> Path:
    """The directory holding ``jwstrun-manifest.json``: OUTDIR, or OUTDIR/out for a demo."""
    from .manifest import MANIFEST_NAME

    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InputError(f"{outdir}: directory not found. Give the -o OUTDIR of a jwstrun run.")
    for candidate in (outdir, outdir / "out"):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise InputError(
        f"{outdir}: has no {MANIFEST_NAME} (nor out/{MANIFEST_NAME}). Give the output directory "
        "of 'jwstrun image2', 'jwstrun image3' or 'jwstrun demo'."
    )


def _load_manifest(run_dir: Path) -> dict:
    """The manifest's records and runs that have the expected shape (a warning for the rest)."""
    from .manifest import MANIFEST_NAME, check_manifest

    path = run_dir / MANIFEST_NAME
    try:
        data, problems = check_manifest(json.loads(path.read_text()))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(
            f"{path}: unreadable manifest ({exc}). Re-run the pipeline command to rewrite it."
        ) from exc
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        log.warning("%s is not a valid manifest (%s%s): the report leaves that out. Re-run the "
                    "pipeline command to rebuild it.", path, "; ".join(problems[:3]), more)
    return data


_LOG_PREFIX = re.compile(r"^\S+ \S+ - (?P<logger>\S+) - (?P<level>[A-Z]+) - (?P<msg>.*)$")
_TW_REF = re.compile(r"Selected image '(?P<name>.+)' as reference image")
_TW_ALIGN = re.compile(r"Aligning image catalog '(?P<name>.+)' to the reference catalog")
_TW_INITIAL = re.compile(
    r"Found initial X and Y shifts of (?P<x>\S+), (?P<y>\S+) \(arcsec\) with significance of "
    r"(?P<sig>\S+) and (?P<n>\d+) matches"
)
_TW_MATCHES = re.compile(r"Found (?P<n>\d+) matches for '(?P<name>.+)'")
_TW_FIT = re.compile(r"Computed '(?P<geom>\w+)' fit for '(?P<name>.+)':")
_TW_SHIFT = re.compile(r"XSH: (?P<x>\S+)\s+YSH: (?P<y>\S+)(?:\s+(?:PROPER )?ROT: (?P<rot>\S+))?"
                       r"(?:\s+SCALE: (?P<scale>\S+))?")
_TW_RMSE = re.compile(r"FIT RMSE: (?P<rmse>\S+)\s+FIT MAE: (?P<mae>\S+)")
_TW_FINAL = re.compile(r"Final solution based on (?P<n>\d+) objects")
_SKY = re.compile(r"(?P<kind>Image|Group) ID=(?P<name>.+?)\. Sky background: (?P<sky>[-+0-9.eEINFAinf]+)")


def _log_messages(path: Path):
    """(logger, level, message) of each line of a task log written by the runner."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        match = _LOG_PREFIX.match(line)
        if match:
            yield match["logger"], match["level"], match["msg"]


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_tweakreg_log(path: str | os.PathLike) -> dict:
    """tweakreg's alignment from a task log: reference image and one row per aligned group.

    Each row: ``name``, ``initial_shift`` (x, y arcsec, the 2-D histogram guess),
    ``matches``, ``fit`` geometry, ``xsh``/``ysh``/``rot``/``scale`` (the correction
    the fit applied; shifts in arcsec in the tangent plane), ``shift_arcsec``
    (its length: the misalignment before), ``rmse``/``mae`` (arcsec: the
    residual after), ``n_fit``.  ``warnings`` keeps tweakreg's warning lines;
    ``ran`` / ``skipped`` say whether the step ran or stpipe skipped it.
    """
    result: dict = {"reference": None, "groups": [], "warnings": [], "ran": False,
                    "skipped": False}
    current: dict | None = None
    in_step = False
    for logger, level, msg in _log_messages(Path(path)):
        if logger.startswith("stpipe"):
            if msg.startswith("Step tweakreg running"):
                result["ran"] = in_step = True
            elif in_step and msg.startswith("Step skipped"):
                result["skipped"], result["ran"] = True, False
            elif msg.startswith("Step tweakreg done"):
                in_step = False
            continue
        if not (logger.startswith("tweakwcs") or logger.startswith("jwst.tweakreg")):
            continue
        result["ran"] = True
        if level in ("WARNING", "ERROR"):
            result["warnings"].append(msg.strip())
        if m := _TW_REF.search(msg):
            result["reference"] = m["name"]
        elif m := _TW_ALIGN.search(msg):
            current = {"name": m["name"], "initial_shift": None, "matches": None, "fit": None,
                       "xsh": None, "ysh": None, "rot": None, "scale": None,
                       "shift_arcsec": None, "rmse": None, "mae": None, "n_fit": None}
            result["groups"].append(current)
        elif current is None:
            continue
        elif m := _TW_INITIAL.search(msg):
            current["initial_shift"] = (_float(m["x"]), _float(m["y"]))
        elif m := _TW_MATCHES.search(msg):
            current["matches"] = int(m["n"])
        elif m := _TW_FIT.search(msg):
            current["fit"] = m["geom"]
        elif m := _TW_SHIFT.search(msg):
            current.update(xsh=_float(m["x"]), ysh=_float(m["y"]), rot=_float(m["rot"]),
                           scale=_float(m["scale"]))
            if current["xsh"] is not None and current["ysh"] is not None:
                current["shift_arcsec"] = (current["xsh"] ** 2 + current["ysh"] ** 2) ** 0.5
        elif m := _TW_RMSE.search(msg):
            current.update(rmse=_float(m["rmse"]), mae=_float(m["mae"]))
        elif m := _TW_FINAL.search(msg):
            current["n_fit"] = int(m["n"])
    return result


def parse_skymatch_log(path: str | os.PathLike) -> list[dict]:
    """skymatch's sky level per image (``name``, ``sky`` in the image's units) from a task log."""
    rows = []
    for logger, _level, msg in _log_messages(Path(path)):
        if "skymatch" not in logger:
            continue
        if m := _SKY.search(msg):
            rows.append({"name": m["name"].strip(), "kind": m["kind"].lower(),
                         "sky": _float(m["sky"])})
    return rows


def _wcs_shift_arcsec(cal: Path, crf: Path) -> float | None:
    """How far tweakreg moved the sky position of the cal's reference pixel (FITS SIP headers)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h_cal = fits.getheader(cal, "SCI")
            h_crf = fits.getheader(crf, "SCI")
            pix = (float(h_cal["CRPIX1"]) - 1, float(h_cal["CRPIX2"]) - 1)
            before = WCS(h_cal).pixel_to_world(*pix)
            after = WCS(h_crf).pixel_to_world(*pix)
        return float(before.separation(after).arcsec)
    except Exception as exc:  # noqa: BLE001 - a cross-check only; report shows "-"
        log.debug("no WCS shift for %s: %s", crf.name, exc)
        return None


# --------------------------------------------------------------------------
# The HTML report
# --------------------------------------------------------------------------
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


def _task_sort_key(record: dict):
    order = {"image2": 0, "image3": 1}
    return (order.get(record.get("pipeline"), 2), record.get("start") or 0, record.get("task_id"))


def _validation_counts(record: dict) -> tuple[int, int]:
    validation = record.get("validation") or {}
    errors = warnings = 0
    for findings in (validation.get("files") or {}).values():
        for finding in findings or []:
            if finding.get("severity") == "error":
                errors += 1
            else:
                warnings += 1
    return errors, warnings


def _task_details(record: dict, run_dir: Path, report_dir: Path) -> str:
    import yaml

    parts = []
    if record.get("error"):
        parts.append(f"<p class='err'><b>Error:</b> {_e(record['error'])}</p>")
    meta = [
        ("pipeline", f"{record.get('pipeline_class') or record.get('pipeline')}"),
        ("input", Path(str(record.get("input") or "")).name),
        ("inputs", ", ".join(e.get("name", "") for e in record.get("inputs") or [])),
        ("started / ended", f"{record.get('start_iso', '-')} / {record.get('end_iso', '-')}"),
        ("worker", f"pid {record.get('worker_pid', '-')} on {record.get('host', '-')}, "
                   f"task #{record.get('tasks_in_worker', '-')} in that worker, "
                   f"worker peak {_num(record.get('worker_peak_rss_mb'), '.0f', ' MB')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items())),
        ("fingerprint", (record.get("fingerprint") or "-")[:16]),
    ]
    if record.get("memory"):
        meta.insert(4, ("memory", _memory_text(record["memory"], record.get("peak_rss_mb"))))
    parts.append("<table class='kv'>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta) + "</table>")
    steps = record.get("step_times") or {}
    if steps:
        parts.append("<b>Step times</b><table><tr><th>step</th><th>seconds</th></tr>" + "".join(
            f"<tr><td>{_e(k)}</td><td class='num'>{_num(v)}</td></tr>" for k, v in steps.items())
            + "</table>")
    refs = record.get("references") or {}
    if refs or record.get("crds_context"):
        # Products of one task normally share their references: show each distinct set once.
        distinct: dict[str, list[str]] = {}
        for product, keys in refs.items():
            distinct.setdefault(json.dumps(keys, sort_keys=True), []).append(product)
        block = [f"<b>CRDS</b> context <code>{_e(record.get('crds_context') or '-')}</code>"]
        for keys_json, products in distinct.items():
            keys = json.loads(keys_json)
            block.append(
                f"<table><tr><th>reference ({_e(', '.join(products) if len(products) < 3 else f'{len(products)} products')})"
                "</th><th>file</th></tr>" + "".join(
                    f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>"
                    for k, v in sorted(keys.items())) + "</table>")
        parts.append("".join(block))
    validation = (record.get("validation") or {}).get("files") or {}
    findings = [(name, f) for name, items in validation.items() for f in items or []]
    if validation:
        if findings:
            parts.append("<b>Validation findings</b><ul>" + "".join(
                f"<li class='{'err' if f.get('severity') == 'error' else 'warn'}'>"
                f"{_e(name)}: {_e(f.get('severity'))} [{_e(f.get('check'))}] {_e(f.get('message'))}</li>"
                for name, f in findings) + "</ul>")
        else:
            parts.append(f"<p>Validation: {len(validation)} product(s), no findings.</p>")
    if record.get("parameters"):
        parts.append("<details><summary>requested parameters (profiles and --set)</summary><pre>"
                     + _e(yaml.safe_dump(record["parameters"], sort_keys=False)) + "</pre></details>")
    if record.get("resolved_parameters"):
        parts.append("<details><summary>resolved parameters (as stpipe logged them)</summary><pre>"
                     + _e(yaml.safe_dump(record["resolved_parameters"], sort_keys=False,
                                         default_flow_style=None))
                     + "</pre></details>")
    log_file = record.get("log_file")
    if log_file and (run_dir / log_file).exists():
        parts.append(f"<p>Log: <a href='{_rel(run_dir / log_file, report_dir)}'>{_e(log_file)}</a></p>")
    return "".join(parts)


def _peak_cell(record: dict) -> str:
    """Measured peak, and for image3 the estimate made before the run (jwstrun.mosaic)."""
    measured = _num(record.get("peak_rss_mb"), ".0f", " MB")
    memory = record.get("memory") or {}
    if memory.get("estimate_mb") is None:
        return measured
    return (f"{measured} <span class='muted' title='estimated before the run'>"
            f"(est. {_num(memory['estimate_mb'], '.0f', ' MB')})</span>")


def _memory_text(memory: dict, peak_mb) -> str:
    mosaic = memory.get("mosaic") or {}
    shape = mosaic.get("shape")
    grid = f"mosaic {shape[1]} x {shape[0]} pixels" if shape else "no mosaic (resample skipped)"
    ratio = ""
    if peak_mb and memory.get("estimate_mb"):
        ratio = f", estimate / measured peak {memory['estimate_mb'] / peak_mb:.2f}"
    return (f"{str(memory.get('mode', '-')).replace('_', ' ')} mode, {grid}, estimated peak "
            f"{_num(memory.get('estimate_mb'), '.0f', ' MB')}{ratio}; {memory.get('reason', '')}")


def _tasks_section(records: list[dict], run_dir: Path, report_dir: Path) -> str:
    rows = []
    for record in records:
        status = record.get("status", "?")
        errors, warnings = _validation_counts(record)
        if record.get("validation") is None:
            vtext = "<span class='muted'>not run</span>"
        else:
            vtext = (f"<span class='{'err' if errors else 'ok'}'>{errors} error(s)</span>, "
                     f"{warnings} warning(s)")
        log_file = record.get("log_file")
        log_cell = (f"<a href='{_rel(run_dir / log_file, report_dir)}'>log</a>"
                    if log_file and (run_dir / log_file).exists() else "-")
        rows.append(
            f"<tr class='task' data-status='{_e(status)}'><td><code>{_e(record.get('task_id'))}</code></td>"
            f"<td>{_e(record.get('pipeline'))}</td><td class='{_e(status)}'>{_e(status)}</td>"
            f"<td class='num'>{_num(record.get('wall_s'), '.1f', ' s')}</td>"
            f"<td class='num'>{_peak_cell(record)}</td>"
            f"<td class='when'>{_e(str(record.get('start_iso', '-')).replace('T', ' ')[:19])}</td><td>{vtext}</td>"
            f"<td><code>{_e(record.get('crds_context') or '-')}</code></td>"
            f"<td class='num'>{len(record.get('outputs') or [])}</td><td>{log_cell}</td></tr>"
            f"<tr class='details'><td colspan='10'><details><summary>details of "
            f"{_e(record.get('task_id'))}</summary>{_task_details(record, run_dir, report_dir)}"
            "</details></td></tr>"
        )
    return (
        "<h2 id='tasks-heading'>Tasks</h2><table id='tasks'><thead><tr><th>task</th><th>pipeline</th>"
        "<th>status</th><th>wall</th><th>peak memory</th><th>started</th><th>validation</th>"
        "<th>CRDS context</th><th>products</th><th>log</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )


def _runs_section(runs: list[dict]) -> str:
    if not runs:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(r.get('command'))}</code></td><td>{_e(r.get('start'))}</td>"
        f"<td class='num'>{_num(r.get('wall_s'), '.1f', ' s')}</td>"
        f"<td>{_e(', '.join(f'{k} {v}' for k, v in (r.get('counts') or {}).items()))}</td>"
        f"<td>{'interrupted' if r.get('interrupted') else ''}</td></tr>"
        for r in runs[-20:]
    )
    return ("<h2>Runs in this directory</h2><table><tr><th>command</th><th>started</th>"
            "<th>wall</th><th>tasks</th><th></th></tr>" + rows + "</table>")


def _gallery_options(name: str) -> dict | None:
    """How the gallery draws product ``name`` (None: not an image): DQ flags on a crf;
    WHT/CON maps for Level-3 mosaics only (per-exposure image2 maps add little)."""
    ptype = product_type(Path(name))
    if ptype not in PREVIEW_TYPES:
        return None
    return {"dq": ptype == "crf", "maps": ptype == "i2d" and _is_level3(name)}


def _gallery_section(products: list[Path], run_dir: Path, report_dir: Path,
                     max_previews: int, problems: list[str], records: list[dict]) -> str:
    from ._previews import reuse

    if not products:
        return "<h2>Images</h2><p class='muted'>No image products in this run.</p>"
    preview_dir = run_dir / PREVIEW_DIRNAME
    if preview_dir.is_symlink():  # the report's own directory: never written through a link
        preview_dir.unlink()
    # previews the workers drew (jwstrun._previews), by product name
    made = {name: entry for record in records if record.get("status") != "failed"
            for name, entry in (record.get("previews") or {}).items()}
    cards = []
    for path in products[:max_previews]:
        options = _gallery_options(path.name)
        try:
            preview = (reuse(made.get(path.name), path, run_dir, options)
                       or preview_file(path, preview_dir, **options))
        except JwstrunError as exc:
            problems.append(str(exc))
            cards.append(f"<figure><div class='err'>{_e(path.name)}: no preview ({_e(exc)})</div></figure>")
            continue
        main, *extra = preview.files
        links = "".join(
            f" · <a href='{_rel(p, report_dir)}'>{_e(p.stem.rsplit('_', 1)[-1].upper())}</a>"
            for p in extra
        )
        note = (f" · {preview.n_catalog_sources} catalog sources"
                if preview.n_catalog_sources is not None else "")
        cards.append(
            f"<figure><a href='{_rel(main, report_dir)}'><img class='thumb' alt='{_e(path.name)}' "
            f"src='{_data_uri(preview.thumbnail, 'image/jpeg')}'></a><figcaption>{_e(path.name)}"
            f"<br><span class='muted'>_{_e(preview.product_type)}, {_e(preview.bunit or 'no BUNIT')}"
            f"{note}</span>{links}</figcaption></figure>"
        )
    more = ""
    if len(products) > max_previews:
        more = (f"<p class='muted'>{len(products) - max_previews} more image products not drawn; "
                f"use 'jwstrun preview' on them.</p>")
    return ("<h2>Images</h2><p class='muted'>Thumbnails link to full previews (colour bar in "
            "BUNIT; crf previews mark DQ-flagged pixels; i2d previews circle the catalog sources, "
            "with WHT and CON maps).</p><div class='gallery'>" + "".join(cards) + "</div>" + more)


def _alignment_section(records: list[dict], run_dir: Path) -> str:
    blocks = []
    for record in records:
        if record.get("pipeline") != "image3" or not record.get("log_file"):
            continue
        log_path = run_dir / record["log_file"]
        if not log_path.exists():
            continue
        tw = parse_tweakreg_log(log_path)
        if not tw["ran"]:
            why = "was skipped" if tw["skipped"] else "did not run"
            blocks.append(f"<h3>{_e(record['task_id'])}</h3><p>tweakreg {why}: the exposures "
                          "keep their pointing WCS.</p>")
            continue
        cal_by_base = {product_basename(e["name"]): e for e in record.get("inputs") or []
                       if e.get("name", "").endswith("_cal.fits")}
        crfs = [run_dir / n for n in record.get("outputs") or [] if n.endswith("_crf.fits")]
        wcs_shift = {}
        for crf in crfs:
            for base, entry in cal_by_base.items():
                if crf.name.startswith(base + "_") and Path(entry["path"]).exists() and crf.exists():
                    wcs_shift[base] = _wcs_shift_arcsec(Path(entry["path"]), crf)

        def wcs_for(name):
            for base, value in wcs_shift.items():
                if base in name or name.split(": ")[-1] in base:
                    return value
            return None

        rows = [
            f"<tr><td>{_e(tw['reference'] or '-')}</td><td>reference</td><td class='num'>-</td>"
            f"<td class='num'>0</td><td class='num'>-</td><td class='num'>"
            f"{_num(wcs_for(tw['reference'] or ''), '.4f')}</td><td></td></tr>"
        ] if tw["reference"] else []
        for g in tw["groups"]:
            rows.append(
                f"<tr class='tweakreg'><td>{_e(g['name'])}</td><td>{_e(g['fit'] or 'no fit')}</td>"
                f"<td class='num'>{_e(g['n_fit'] if g['n_fit'] is not None else g['matches'] or '-')}</td>"
                f"<td class='num'>{_num(g['shift_arcsec'], '.4f')}</td>"
                f"<td class='num'>{_num(g['rmse'], '.4f')}</td>"
                f"<td class='num'>{_num(wcs_for(g['name']), '.4f')}</td>"
                f"<td>XSH {_num(g['xsh'], '.4f')}, YSH {_num(g['ysh'], '.4f')}, "
                f"ROT {_num(g['rot'], '.5f')} deg</td></tr>"
            )
        warn = "".join(f"<li class='warn'>{_e(w)}</li>" for w in tw["warnings"][:10])
        plot = ""
        fitted = [g for g in tw["groups"] if g["shift_arcsec"] is not None and g["rmse"] is not None]
        if fitted:
            plot = _alignment_plot(fitted)
        blocks.append(
            f"<h3>{_e(record['task_id'])}</h3><table class='tweakreg-table'><tr><th>image group</th><th>fit</th>"
            "<th>sources in fit</th><th>before: offset removed (arcsec)</th>"
            "<th>after: fit RMSE (arcsec)</th><th>WCS moved cal→crf (arcsec)</th><th>fit</th></tr>"
            + "".join(rows) + "</table>" + (f"<ul>{warn}</ul>" if warn else "") + plot
        )
    if not blocks:
        return ""
    return ("<h2>Alignment (tweakreg)</h2><p class='muted'>From the image3 task logs (tweakwcs "
            "'FIT RMSE' and shift lines) and the cal/crf WCS headers. Before = the offset of "
            "each image relative to the reference that the fit removed; after = the RMS of the "
            "matched-source residuals.</p>" + "".join(blocks))


def _alignment_plot(groups: list[dict]) -> str:
    import numpy as np

    fig = _plot_figure(6.4, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    before = [max(g["shift_arcsec"], 1e-6) for g in groups]
    after = [max(g["rmse"], 1e-6) for g in groups]
    ax.bar(x - 0.18, before, 0.36, label="before (offset removed)", color="#c0504d")
    ax.bar(x + 0.18, after, 0.36, label="after (fit RMSE)", color="#4f81bd")
    ax.set_yscale("log")
    ax.set_xticks(x, [g["name"].split(": ")[-1] for g in groups], fontsize=6, rotation=12)
    ax.set_ylim(top=max(before + after) * 6)  # room for the legend above the bars
    ax.set_ylabel("arcsec")
    ax.set_title("tweakreg relative alignment", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    return f"<div class='plot'><img alt='tweakreg residuals' src='{_data_uri(_fig_png(fig))}'></div>"


def _skymatch_section(records: list[dict], run_dir: Path) -> str:
    blocks = []
    for record in records:
        if record.get("pipeline") != "image3" or not record.get("log_file"):
            continue
        from astropy.io import fits  # here: an image2 report imports no astropy

        levels = {r["name"]: r for r in parse_skymatch_log(run_dir / record["log_file"])}
        crfs = [run_dir / n for n in record.get("outputs") or [] if n.endswith("_crf.fits")]
        headers = {}
        for crf in crfs:
            try:
                headers[crf.name] = fits.getheader(crf, 0)
            except Exception:  # noqa: BLE001 - a missing crf shows as "-"
                continue
        if not levels and not headers:
            continue
        rows = []
        names = list(levels) or list(headers)
        for name in names:
            crf_name = next((c for c in headers if c.startswith(product_basename(name) + "_")), None)
            header = headers.get(crf_name) if crf_name else headers.get(name)
            rows.append(
                f"<tr class='skymatch'><td>{_e(name)}</td>"
                f"<td class='num'>{_num(levels.get(name, {}).get('sky'), '.5g')}</td>"
                f"<td class='num'>{_num(header.get('BKGLEVEL') if header is not None else None, '.5g')}</td>"
                f"<td>{_e(header.get('BKGMETH') if header is not None else '-')}</td>"
                f"<td>{_e(header.get('BKGSUB') if header is not None else '-')}</td>"
                f"<td>{_e(crf_name or '-')}</td></tr>"
            )
        blocks.append(
            f"<h3>{_e(record['task_id'])}</h3><table class='skymatch-table'><tr><th>image</th>"
            "<th>sky level (skymatch log)</th><th>BKGLEVEL (crf header)</th><th>method</th>"
            "<th>subtracted</th><th>crf</th></tr>" + "".join(rows) + "</table>"
        )
    if not blocks:
        return ""
    return ("<h2>Sky matching (skymatch)</h2><p class='muted'>Levels in the images' units "
            "(MJy/sr); with 'match' the lowest image is 0 and the others are relative to it.</p>"
            + "".join(blocks))


def _find_truth(records: list[dict], run_dir: Path, report_dir: Path) -> Path | None:
    """The simulator's truth_sources.ecsv next to the run's raw inputs (a demo or simulated run)."""
    from .simulate.program import TRUTH_FILE

    candidates = [report_dir / "sim", run_dir.parent / "sim", run_dir]
    for record in records:
        for entry in record.get("inputs") or []:
            candidates.append(Path(entry.get("path", "")).parent)
    for directory in candidates:
        if (directory / TRUTH_FILE).is_file():
            return directory / TRUTH_FILE
    return None


def _catalog_section(records: list[dict], run_dir: Path, report_dir: Path) -> str:
    cats = [run_dir / n for r in records for n in r.get("outputs") or []
            if n.endswith("_cat.ecsv") and (run_dir / n).exists()]
    if not cats:
        return ""
    import numpy as np
    from astropy.table import Table
    truth_path = _find_truth(records, run_dir, report_dir)
    truth = None
    if truth_path is not None:
        try:
            truth = Table.read(truth_path, format="ascii.ecsv")
        except Exception as exc:  # noqa: BLE001 - the comparison is optional
            log.warning("%s: unreadable truth table (%s); no measured-vs-injected plot.", truth_path, exc)
    blocks = []
    for cat_path in cats:
        try:
            cat = Table.read(cat_path, format="ascii.ecsv")
        except Exception as exc:  # noqa: BLE001
            blocks.append(f"<p class='err'>{_e(cat_path.name)}: unreadable ({_e(exc)})</p>")
            continue
        column = "aper_total_abmag"
        if column not in cat.colnames:
            blocks.append(f"<p>{_e(cat_path.name)}: {len(cat)} sources, no {column} column.</p>")
            continue
        mags = np.asarray(np.ma.filled(np.ma.masked_invalid(cat[column]), np.nan), float)
        good = np.isfinite(mags)
        n_ext = int(np.sum(np.asarray(cat["is_extended"]))) if "is_extended" in cat.colnames else None
        fig = _plot_figure(6.4 if truth is None else 11.0, 3.6)
        ax = fig.add_subplot(1, 1 if truth is None else 2, 1)
        if good.any():
            ax.hist(mags[good], bins=min(40, max(8, good.sum() // 4)), color="#4f81bd")
        ax.set_xlabel(f"{column} (AB mag)")
        ax.set_ylabel("sources")
        ax.set_title(f"{cat_path.name}: {good.sum()} of {len(cat)} with a magnitude", fontsize=8)
        match_text = ""
        if truth is not None and "sky_centroid" in cat.colnames:
            comparison = _match_truth(cat, truth, mags)
            if comparison is not None:
                injected, measured, sep = comparison
                ax2 = fig.add_subplot(1, 2, 2)
                ax2.scatter(injected, measured, s=9, color="#c0504d")
                lo = float(np.nanmin([injected.min(), measured.min()])) - 0.3
                hi = float(np.nanmax([injected.max(), measured.max()])) + 0.3
                ax2.plot([lo, hi], [lo, hi], color="#333", lw=0.8, label="measured = injected")
                ax2.set_xlim(lo, hi)
                ax2.set_ylim(lo, hi)
                ax2.set_xlabel("injected abmag (truth)")
                ax2.set_ylabel(f"measured {column}")
                delta = measured - injected
                ax2.set_title(f"{len(injected)} matched within {_MATCH_ARCSEC}\": median Δ = "
                              f"{np.median(delta):+.3f} mag", fontsize=8)
                ax2.legend(fontsize=8)
                match_text = (f" {len(injected)} sources matched to {_e(truth_path.name)} within "
                              f"{_MATCH_ARCSEC} arcsec; median measured − injected = {np.median(delta):+.3f} mag, "
                              f"median separation {np.median(sep):.3f} arcsec.")
        plot = f"<div class='plot'><img alt='catalog magnitudes' src='{_data_uri(_fig_png(fig))}'></div>"
        ext = f", {n_ext} extended" if n_ext is not None else ""
        blocks.append(f"<p><b>{_e(cat_path.name)}</b>: {len(cat)} sources{ext}.{match_text}</p>{plot}")
    return "<h2 id='catalog'>Catalog magnitudes</h2>" + "".join(blocks)


def _match_truth(cat, truth, mags):
    """(injected, measured, separation) for catalog sources within _MATCH_ARCSEC of a truth source."""
    import numpy as np
    from astropy.coordinates import SkyCoord

    if not {"ra", "dec", "abmag"} <= set(truth.colnames):
        return None
    try:
        measured_pos = cat["sky_centroid"]
        truth_pos = SkyCoord(np.asarray(truth["ra"], float), np.asarray(truth["dec"], float),
                             unit="deg")
        idx, sep, _ = measured_pos.match_to_catalog_sky(truth_pos)
    except Exception as exc:  # noqa: BLE001 - optional comparison
        log.debug("truth match failed: %s", exc)
        return None
    sep = sep.arcsec
    ok = (sep < _MATCH_ARCSEC) & np.isfinite(mags)
    if "kind" in truth.colnames:  # extended sources have no single total magnitude to compare
        ok &= np.asarray([str(k) == "point" for k in truth["kind"][idx]])
    if not ok.any():
        return None
    return np.asarray(truth["abmag"], float)[idx][ok], mags[ok], sep[ok]


def _header_section(outdir: Path, run_dir: Path, manifest: dict, records: list[dict]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.get("status", "?")] = counts.get(record.get("status", "?"), 0) + 1
    contexts = sorted({r.get("crds_context") for r in records if r.get("crds_context")})
    versions = next((r.get("versions") for r in records if r.get("versions")), {}) or {}
    summary = ", ".join(f"<span class='{_e(k)}'>{v} {_e(k)}</span>" for k, v in sorted(counts.items()))
    rows = [
        ("output directory", str(run_dir)),
        ("tasks", None),
        ("CRDS context", ", ".join(contexts) or "-"),
        ("software", ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"),
        ("manifest updated", manifest.get("updated", "-")),
        ("report written", time.strftime("%Y-%m-%d %H:%M:%S %z")),
    ]
    body = "".join(
        f"<tr><td>{_e(k)}</td><td>{summary if v is None else _e(v)}</td></tr>" for k, v in rows
    )
    return (f"<h1>jwstrun run report: {_e(outdir.name or outdir)}</h1>"
            f"<table class='kv' id='summary'>{body}</table>")


def _is_level3(name: str) -> bool:
    """Level-3 product names start jwNNNNN-oNNN / -cNNNN (program-wide), not jwPPPPPOOOVVV."""
    return re.match(r"jw\d{5}-", name) is not None


def _image_products(records: list[dict], run_dir: Path) -> list[Path]:
    """Image products of the run, mosaics first, then crf, cal and the rest."""
    rank = {"i2d": 1, "crf": 2, "cal": 3, "calints": 4, "crfints": 5, "bsub": 6}
    found = []
    for record in records:
        if record.get("status") == "failed":
            continue
        for name in record.get("outputs") or []:
            path = run_dir / name
            ptype = product_type(path)
            if ptype in PREVIEW_TYPES and path.exists():
                # Level-3 mosaics (jwNNNNN-oNNN_...) ahead of per-exposure i2d
                level3 = 0 if _is_level3(name) else 1
                found.append(((rank.get(ptype, 9), level3, name), path))
    return [p for _key, p in sorted(found)]


#: what an image3 report imports (about 2 s): :func:`preload_report_modules` imports
#: them ahead, in a thread of a process that is waiting for its workers anyway
_REPORT_MODULES = (
    "numpy", "astropy.io.fits", "astropy.table", "astropy.visualization", "astropy.wcs",
    "astropy.coordinates", "matplotlib.figure", "matplotlib.backends.backend_agg",
    "matplotlib.colors", "matplotlib.patches", "matplotlib.cm", "PIL.Image", "yaml",
    "scipy.spatial",  # astropy's catalog matching (the truth comparison)
)


def preload_report_modules():
    """Import what :func:`write_report` needs in a daemon thread; returns the thread.

    ``jwstrun image3`` and ``demo`` start it with the run: the parent only waits
    for its workers meanwhile, so the report at the end does not pay the imports.
    """
    import importlib
    import threading

    def run():
        for name in _REPORT_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the report itself will say what is wrong
                log.debug("preloading %s failed", name, exc_info=True)

    thread = threading.Thread(target=run, name="jwstrun-report-preload", daemon=True)
    thread.start()
    return thread


def write_report(outdir: str | os.PathLike, *, previews: bool = True,
                 max_previews: int = MAX_PREVIEWS) -> Path:
    """Write ``OUTDIR/jwstrun-report.html`` for the run in OUTDIR (or OUTDIR/out for a demo).

    The page needs no network and no JavaScript: plots and thumbnails are
    embedded as base64 PNGs; full previews are written to ``<run>/previews/``
    and linked relative to the page, as are the task logs.  Previews the
    workers drew (the tasks' manifest records list them, jwstrun._previews) are
    reused while they are newer than their product; the others are drawn here.
    Returns the path.
    """
    outdir = Path(outdir)
    run_dir = find_run_dir(outdir)
    manifest = _load_manifest(run_dir)
    for directory in dict.fromkeys((outdir, run_dir) if previews else (outdir,)):
        _check_writable(directory)  # before spending time on drawing
    records = sorted(manifest["tasks"].values(), key=_task_sort_key)
    report_dir = outdir.resolve()
    run_dir = run_dir.resolve()
    problems: list[str] = []
    start = time.monotonic()
    sections = [
        _header_section(report_dir, run_dir, manifest, records),
        _tasks_section(records, run_dir, report_dir),
    ]
    if previews:
        sections.append(_gallery_section(_image_products(records, run_dir), run_dir, report_dir,
                                         max_previews, problems, records))
    for builder in (_alignment_section, _skymatch_section):
        try:
            sections.append(builder(records, run_dir))
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the page
            log.warning("report: %s failed (%s)", builder.__name__.strip("_"), exc)
            problems.append(f"{builder.__name__.strip('_')}: {exc}")
    try:
        sections.append(_catalog_section(records, run_dir, report_dir))
    except Exception as exc:  # noqa: BLE001
        log.warning("report: catalog section failed (%s)", exc)
        problems.append(f"catalog section: {exc}")
    sections.append(_runs_section(manifest.get("runs") or []))
    if problems:
        sections.append("<h2>Report problems</h2><ul>" + "".join(
            f"<li class='err'>{_e(p)}</li>" for p in problems) + "</ul>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>jwstrun report: {_e(outdir.name)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}</style></head><body>" + "".join(sections)
        + f"<p class='muted'>Written by jwstrun in {time.monotonic() - start:.2f} s.</p></body></html>\n"
    )
    dest = report_dir / REPORT_NAME
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{REPORT_NAME}.", suffix=".tmp", dir=report_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(outdir, exc) from exc
        raise
    log.info("report written to %s", dest)
    return dest


def _unwritable(directory: Path, exc: OSError) -> OutputError:
    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(
        f"{directory}: cannot write the report there ({what}). Make the directory writable "
        "(or free space), or run 'jwstrun report' on a writable copy of it."
    )


def _check_writable(directory: Path) -> None:
    """:class:`OutputError` unless a file can be created in ``directory``."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise _unwritable(directory, exc) from exc


# --------------------------------------------------------------------------
# Viewers
# --------------------------------------------------------------------------
#: viewer -> (executable, Python module needed, install hint)
VIEWERS = {
    "ginga": ("ginga", "ginga", "pip install ginga PyQt5"),
    "glue": ("glue", "glue", "pip install glue-qt"),
    "ds9": ("ds9", None, "install SAOImage DS9 (Debian/Ubuntu: 'apt-get install saods9'; "
            "others: https://sites.google.com/cfa.harvard.edu/saoimageds9)"),
}
_QT_BINDINGS = ("PyQt5", "PyQt6", "PySide6", "PySide2")


def _find_executable(name: str) -> str | None:
    # The venv's own bin directory first: a pip-installed viewer lives next to python
    # even when the venv is not activated.
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def viewer_status(viewer: str) -> dict:
    """Whether a viewer can load files here and can open a window: a dict with a hint."""
    import importlib.util

    if viewer not in VIEWERS:
        raise InputError(f"unknown viewer {viewer!r}; choose one of {', '.join(VIEWERS)}.")
    executable, module, hint = VIEWERS[viewer]
    has_module = module is None or importlib.util.find_spec(module) is not None
    exe = _find_executable(executable)
    qt = [b for b in _QT_BINDINGS if importlib.util.find_spec(b) is not None] if module else []
    can_load = has_module and (module is not None)
    can_open = exe is not None and (module is None or (has_module and bool(qt)))
    return {"viewer": viewer, "executable": exe, "python_module": has_module if module else None,
            "qt_binding": qt[0] if qt else None, "can_load": can_load, "can_open": can_open,
            "hint": hint}


def _missing_viewer(viewer: str, what: str) -> JwstrunError:
    hint = VIEWERS[viewer][2]
    action = hint if hint.startswith("install") else f"install it with '{hint}'"
    return JwstrunError(f"{viewer} {what}; {action}. Or make PNG quick looks with 'jwstrun preview'.")


def load_in_viewer(path: str | os.PathLike, viewer: str = "ginga") -> dict:
    """Load a product through the viewer's own image-loading API, no window.

    ginga: ``AstroImage.load_file`` on the SCI extension; glue:
    ``glue.core.data_factories.load_data``.  Returns what the viewer saw
    (shape, units, a pixel's sky position from its WCS).
    """
    path = Path(path)
    header = read_primary_header(path)
    ptype = product_type(path, header)
    status = viewer_status(viewer)
    if viewer == "ds9":
        raise JwstrunError("ds9 has no Python loading API; use --with ginga or glue with --check.")
    if not status["python_module"]:
        raise _missing_viewer(viewer, "is not installed")
    if viewer == "ginga":
        from ginga.AstroImage import AstroImage

        image = AstroImage(logger=logging.getLogger("ginga"))
        try:
            image.load_file(str(path), idx="SCI" if ptype != "segm" else 1)
        except Exception as exc:  # noqa: BLE001 - the viewer's own error, named
            raise InputError(f"{path}: ginga cannot load it ({exc}).") from exc
        data = image.get_data()
        ny, nx = data.shape[-2:]
        try:
            ra, dec = image.pixtoradec(nx / 2, ny / 2)
        except Exception:  # noqa: BLE001 - no celestial WCS
            ra = dec = None
        return {"viewer": "ginga", "path": str(path), "shape": list(data.shape),
                "bunit": image.get_keyword("BUNIT", None), "name": image.get("name"),
                "center_radec": None if ra is None else [float(ra), float(dec)]}
    from glue.core.data_factories import load_data

    try:
        data = load_data(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: glue cannot load it ({exc}).") from exc
    items = data if isinstance(data, list) else [data]
    first = items[0]
    return {"viewer": "glue", "path": str(path), "shape": list(first.shape),
            "components": [str(c) for c in first.components], "bunit": None,
            "center_radec": None}


def view_file(path: str | os.PathLike, viewer: str | None = None) -> dict:
    """Open a product in a viewer window (ginga, glue or ds9); returns the process info.

    ``viewer=None`` takes the first of ginga, glue, ds9 that can open a window.
    The viewer runs detached; jwstrun does not wait for it.
    """
    path = Path(path)
    read_primary_header(path)  # clear error for a missing or broken file, before any launch
    names = [viewer] if viewer else list(VIEWERS)
    statuses = [viewer_status(v) for v in names]
    usable = [s for s in statuses if s["can_open"]]
    if not usable:
        no_qt = [s for s in statuses if s["python_module"] and not s["qt_binding"]]
        if no_qt:
            name = no_qt[0]["viewer"]
            raise JwstrunError(
                f"{name} is installed but has no Qt binding to open a window; install one with "
                f"'pip install PyQt5'. Or load the file without a window: "
                f"jwstrun view {path} --with {name} --check."
            )
        if viewer:
            raise _missing_viewer(viewer, "is not installed")
        raise JwstrunError(
            "no image viewer found (ginga, glue, ds9). Install one: 'pip install ginga PyQt5' "
            "or 'pip install glue-qt', or SAOImage DS9. Or make PNG quick looks with 'jwstrun preview'."
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise JwstrunError(
            f"no display to open {usable[0]['viewer']} on (DISPLAY is not set). Use ssh -X, or "
            f"make PNG quick looks with 'jwstrun preview {path} -o previews/'."
        )
    chosen = usable[0]
    command = [chosen["executable"], str(path)]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise JwstrunError(f"cannot start {chosen['viewer']} ({exc}).") from exc
    return {"viewer": chosen["viewer"], "command": command, "pid": process.pid}
