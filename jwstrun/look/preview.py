"""PNG quick looks of rate, cal, crf and i2d products.

:func:`preview_file` / :func:`preview_files` draw a product (and its
per-integration variants) with a robust stretch, a colour bar in the product's
BUNIT, DQ-flagged pixels on request, the ``_cat.ecsv`` sources on an i2d, and
the i2d's WHT and CON maps, plus a small JPEG thumbnail that the report embeds.

matplotlib, astropy and numpy are imported inside the functions (``jwstrun
--help`` stays fast).  Figures are drawn on matplotlib's Agg canvas directly,
never through pyplot, so no display is needed and a caller's interactive
backend (a Jupyter session) is left alone.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_write
from ..errors import InputError, OutputError
from ..products import DQ_FLAGS, product_basename, product_type, read_catalog, read_primary_header

__all__ = [
    "PREVIEW_TYPES",
    "STRETCHES",
    "PREVIEW_DIRNAME",
    "MAX_PREVIEWS",
    "NAN_COLOUR",
    "Preview",
    "preview_file",
    "preview_files",
]

log = logging.getLogger(__name__)

#: Product types that have an image to look at.
PREVIEW_TYPES = (
    "rate", "rateints", "bsub", "bsubints", "cal", "calints", "crf", "crfints", "i2d",
)
#: ``asinh``: asinh stretch between the 0.5 and 99.8 percentiles (faint sky and
#: bright cores both visible); ``zscale``: IRAF/ds9 zscale limits, linear.
STRETCHES = ("asinh", "zscale")
PREVIEW_DIRNAME = "previews"
#: images the report shows by default (``jwstrun report --max-previews``)
MAX_PREVIEWS = 60

#: colour of pixels with no data (NaN) in previews and thumbnails: slate blue, not black
NAN_COLOUR = "#5b6f8a"

# Images are block-averaged to at most this many pixels on their longer side before
# drawing: about the size of the axes in the 800-pixel-wide preview figure.
_DISPLAY_PIXELS = 700
_THUMB_PIXELS = 220


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
    # one holds the usual colour bar's tick labels and label, _keep_inside makes
    # room for wider ones.
    fig.subplots_adjust(left=0.09, right=0.88, bottom=0.07, top=1 - 0.6 / height)
    return fig


def _keep_inside(fig, bar, margin: float = 0.05) -> None:
    """Move the axes in from the right until the colour ``bar``'s tick labels and label end
    ``margin`` inches inside the figure. The fixed margins of :func:`_figure` fit short tick
    labels; wider ones ("-0.000123", "1.5e+06") pushed the label past the right edge, where
    it was cut off. Text extents only (the draw reuses the ticks made here): ~10 ms."""
    box = bar.ax.get_tightbbox(fig.canvas.get_renderer())  # display pixels
    over = (box.x1 - fig.bbox.x1) / fig.dpi + margin
    if over > 0:
        params = fig.subplotpars
        fig.subplots_adjust(right=params.right - over / fig.get_size_inches()[0])


def _save_figure(fig, dest: Path) -> None:
    """Draw a figure and write it as an RGB PNG, atomically."""
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    # zlib level 1: noisy sky hardly compresses at higher levels, which take 2-3x longer.
    # No fsync: a preview lost in a crash is drawn again (the report checks each one).
    atomic_write(dest, lambda tmp: Image.fromarray(rgb).save(tmp, format="png", compress_level=1),
                 fsync=False)


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

    table = read_catalog(path, columns=("xcentroid", "ycentroid"))
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
            outlier = (dq & DQ_FLAGS["OUTLIER"]) > 0
            dnu = ((dq & DQ_FLAGS["DO_NOT_USE"]) > 0) & ~outlier
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
    _keep_inside(fig, bar)
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
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=NAN_COLOUR)


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
    _keep_inside(fig, bar)
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
    (jwstrun.look._worker draws them before the catalog that the image shows exists)."""
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
    from ..inputs import expand_inputs

    paths = expand_inputs(files, suffixes=PREVIEW_TYPES)  # a directory: its image products
    for path in paths:  # fail fast, naming the file, before spending time on drawing
        _check_previewable(path)
    return [preview_file(path, outdir, **options) for path in paths]


def gallery_options(name: str) -> dict | None:
    """How the gallery draws product ``name`` (None: not an image): DQ flags on a crf;
    WHT/CON maps for Level-3 mosaics only (per-exposure image2 maps add little)."""
    ptype = product_type(Path(name))
    if ptype not in PREVIEW_TYPES:
        return None
    return {"dq": ptype == "crf", "maps": ptype == "i2d" and is_level3(name)}


def is_level3(name: str) -> bool:
    """Level-3 product names start jwNNNNN-oNNN / -cNNNN (program-wide), not jwPPPPPOOOVVV."""
    return re.match(r"jw\d{5}-", name) is not None

