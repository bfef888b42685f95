"""Science checks of Stage 3 products against a simulation's truth tables.

* alignment: every ``_crf`` WCS (after tweakreg) against the exposure's true
  pointing, evaluated on a pixel grid; the common offset of all exposures is
  the arbitrary absolute frame (no absolute reference catalog), the spread
  around it is the relative alignment error;
* cosmic rays: fraction of injected cosmic-ray pixels flagged OUTLIER in ``_crf``;
* sources: fraction of injected point sources above an S/N cut found in
  ``_cat.ecsv`` within a radius (after removing the common frame offset), and
  the median measured / injected flux.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..products import DQ_FLAGS, product_basename

__all__ = ["ScienceChecks", "alignment_residuals", "cosmic_ray_recall", "source_recovery", "run_checks"]

log = logging.getLogger(__name__)

OUTLIER = DQ_FLAGS["OUTLIER"]


@dataclass
class ScienceChecks:
    """Numbers a run is judged by (arcsec, fractions)."""

    alignment_rms_arcsec: float | None = None
    alignment_max_arcsec: float | None = None
    alignment_before_max_arcsec: float | None = None
    cosmic_ray_recall: float | None = None
    cosmic_rays_injected: int = 0
    sources_recovered: float | None = None
    sources_considered: int = 0
    frame_offset_arcsec: float | None = None
    flux_ratio_median: float | None = None
    snr_cut: float = 20.0
    match_radius_arcsec: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


_EXPOSURE_RE = re.compile(r"^(jw\d{11}_\d{5}_\d{5}_[a-z0-9]+)")


def _exposure_key(name) -> str:
    """``jw..._nrcb1`` of any product of an exposure (Stage 3 inserts ``_a3001`` etc.)."""
    base = product_basename(name)
    match = _EXPOSURE_RE.match(base)
    return match.group(1) if match else base


def _truth_tables(sim_dir: Path):
    from astropy.table import Table

    from .program import COSMIC_RAY_FILE, POINTING_FILE, TRUTH_FILE

    return (
        Table.read(sim_dir / TRUTH_FILE, format="ascii.ecsv"),
        Table.read(sim_dir / POINTING_FILE, format="ascii.ecsv"),
        Table.read(sim_dir / COSMIC_RAY_FILE, format="ascii.ecsv"),
    )


def _crds_ref_path(crds_path: Path, instrument: str, keyword_value: str) -> str:
    name = keyword_value.replace("crds://", "")
    return str(Path(crds_path) / "references" / "jwst" / instrument.lower() / name)


def _true_wcs(model, ra_true, dec_true, crds_path, refs=None):
    """The WCS the exposure would have with its true pointing (same refs, same code;
    ``refs``: the distortion and filteroffset files when ``model`` names none, a _rate)."""
    from stdatamodels.jwst.datamodels import ImageModel

    from jwst.assign_wcs.assign_wcs import load_wcs

    shape = model.data.shape[-2:]
    copy = ImageModel(shape)
    copy.meta.instrument = model.meta.instrument.instance
    copy.meta.exposure = model.meta.exposure.instance
    copy.meta.subarray = model.meta.subarray.instance
    copy.meta.observation = model.meta.observation.instance
    copy.meta.velocity_aberration = model.meta.velocity_aberration.instance
    copy.meta.wcsinfo = {
        k: v for k, v in model.meta.wcsinfo.instance.items() if k in (
            "v2_ref", "v3_ref", "vparity", "v3yangle", "roll_ref", "siaf_xref_sci", "siaf_yref_sci")
    }
    copy.meta.wcsinfo.ra_ref = float(ra_true)
    copy.meta.wcsinfo.dec_ref = float(dec_true)
    if refs is None:
        inst = model.meta.instrument.name
        refs = {
            "distortion": _crds_ref_path(crds_path, inst, model.meta.ref_file.distortion.name),
            "filteroffset": _crds_ref_path(crds_path, inst, model.meta.ref_file.filteroffset.name),
        }
        if "N/A" in model.meta.ref_file.filteroffset.name:
            refs["filteroffset"] = None
    load_wcs(copy, refs)
    return copy.meta.wcs


def _grid(shape, n=8):
    ny, nx = shape
    ys, xs = np.mgrid[0 : ny - 1 : complex(n), 0 : nx - 1 : complex(n)]
    return xs.ravel(), ys.ravel()


def _offset_arcsec(ra1, dec1, ra0, dec0):
    dra = ((np.asarray(ra1) - ra0 + 180) % 360 - 180) * np.cos(np.radians(dec0)) * 3600
    ddec = (np.asarray(dec1) - dec0) * 3600
    return dra, ddec


def alignment_residuals(crf_files, sim_dir, crds_path):
    """Per-exposure (dxi, deta) offsets of the tweaked WCS from the truth, and before."""
    from stdatamodels.jwst.datamodels import ImageModel

    _, pointing, _ = _truth_tables(Path(sim_dir))
    by_name = {_exposure_key(row["file"]): row for row in pointing}
    after, before = [], []
    for path in crf_files:
        row = by_name.get(_exposure_key(path))
        if row is None:
            continue
        with ImageModel(path) as model:
            true_wcs = _true_wcs(model, row["ra_ref_true"], row["dec_ref_true"], crds_path)
            xs, ys = _grid(model.data.shape)
            r1, d1 = model.meta.wcs(xs, ys, with_bounding_box=False)
            r0, d0 = true_wcs(xs, ys, with_bounding_box=False)
            dx, dy = _offset_arcsec(r1, d1, r0, d0)
            after.append((float(np.mean(dx)), float(np.mean(dy))))
            before.append((-float(row["error_xi_arcsec"]), -float(row["error_eta_arcsec"])))
    return np.array(after), np.array(before)


def _spread(offsets):
    if len(offsets) < 2:
        return 0.0, 0.0
    rel = offsets - offsets.mean(axis=0)
    dist = np.hypot(rel[:, 0], rel[:, 1])
    return float(np.sqrt(np.mean(dist**2))), float(dist.max())


def cosmic_ray_recall(crf_files, sim_dir) -> tuple[float | None, int]:
    """Fraction of injected cosmic-ray pixels flagged OUTLIER in the ``_crf`` files."""
    from astropy.io import fits

    _, _, crs = _truth_tables(Path(sim_dir))
    if len(crs) == 0:
        return None, 0
    by_base = {}
    for row in crs:
        by_base.setdefault(_exposure_key(row["file"]), []).append(row)
    flagged = total = 0
    for path in crf_files:
        rows = by_base.get(_exposure_key(path), [])
        if not rows:
            continue
        dq = fits.getdata(path, "DQ")
        for row in rows:
            plane = dq[row["integration"]] if dq.ndim == 3 else dq
            total += 1
            flagged += bool(plane[row["y"], row["x"]] & OUTLIER)
    return (flagged / total if total else None), total


def source_recovery(cat_file, sim_dir, snr_column, snr_cut=20.0, radius=0.05):
    """(recovered fraction, n considered, common frame offset, median flux ratio)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    truth, _, _ = _truth_tables(Path(sim_dir))
    ra = np.asarray(truth["ra"], dtype=float)
    dec = np.asarray(truth["dec"], dtype=float)
    flux = np.asarray(truth["flux_jy"], dtype=float)
    snr = np.asarray(truth[snr_column], dtype=float)
    cat = Table.read(cat_file, format="ascii.ecsv")
    sel = (np.asarray(truth["kind"]) == "point") & (snr > snr_cut)
    inside = _inside_footprint(cat_file, ra, dec)
    considered = sel & inside
    n = int(considered.sum())
    if len(cat) == 0:
        return 0.0, n, None, None
    cat_coord = SkyCoord(cat["sky_centroid"].ra, cat["sky_centroid"].dec)
    idx, sep, _ = SkyCoord(ra * u.deg, dec * u.deg).match_to_catalog_sky(cat_coord)
    close = considered & (sep.arcsec < 0.3)
    if close.sum() < 3:
        return 0.0, n, None, None
    # the mosaic's absolute frame is the reference exposure's (no absolute catalog):
    # remove that common offset before matching at the tight radius
    dra, ddec = _offset_arcsec(cat_coord.ra.deg[idx[close]], cat_coord.dec.deg[idx[close]],
                               ra[close], dec[close])
    off = (float(np.median(dra)), float(np.median(ddec)))
    shifted = SkyCoord((ra + off[0] / 3600 / np.cos(np.radians(dec))) * u.deg,
                       (dec + off[1] / 3600) * u.deg)
    idx, sep, _ = shifted.match_to_catalog_sky(cat_coord)
    found = considered & (sep.arcsec < radius)
    ratio = None
    bright = found & (snr > 50)
    if "aper_total_flux" in cat.colnames and bright.any():
        column = cat["aper_total_flux"]
        measured = u.Quantity(column).to_value(u.Jy) if column.unit else np.asarray(column)
        ratio = float(np.nanmedian(np.asarray(measured)[idx[bright]] / flux[bright]))
    return (found.sum() / n if n else None), n, float(math.hypot(*off)), ratio


def _inside_footprint(cat_file, ra, dec, margin_pix=10):
    """Truth sources that fall on the mosaic with full coverage (weight > 0 around them)."""
    from stdatamodels.jwst.datamodels import ImageModel

    i2d = Path(str(cat_file).replace("_cat.ecsv", "_i2d.fits"))
    with ImageModel(i2d) as model:
        x, y = model.meta.wcs.world_to_pixel_values(ra, dec)
        wht = model.wht
        ny, nx = wht.shape
        ok = np.isfinite(x) & np.isfinite(y)
        ok &= (x > margin_pix) & (x < nx - margin_pix) & (y > margin_pix) & (y < ny - margin_pix)
        inside = np.zeros(len(ra), bool)
        xi = np.clip(np.round(np.nan_to_num(x)).astype(int), 0, nx - 1)
        yi = np.clip(np.round(np.nan_to_num(y)).astype(int), 0, ny - 1)
        full = np.nanmax(wht) * 0.5
        for k in np.flatnonzero(ok):
            box = wht[yi[k] - margin_pix : yi[k] + margin_pix + 1, xi[k] - margin_pix : xi[k] + margin_pix + 1]
            inside[k] = box.size and np.all(box > full)
    return inside


def run_checks(sim_dir, crf_files, cat_file, crds_path, snr_column, snr_cut=20.0, radius=0.05) -> ScienceChecks:
    """All science checks of one Stage 3 product against the truth."""
    checks = ScienceChecks(snr_cut=snr_cut, match_radius_arcsec=radius)
    crf_files = [Path(p) for p in crf_files]
    if crf_files:
        after, before = alignment_residuals(crf_files, sim_dir, crds_path)
        if len(after):
            checks.alignment_rms_arcsec, checks.alignment_max_arcsec = _spread(after)
            _, checks.alignment_before_max_arcsec = _spread(before)
        checks.cosmic_ray_recall, checks.cosmic_rays_injected = cosmic_ray_recall(crf_files, sim_dir)
    if cat_file and Path(cat_file).exists():
        (checks.sources_recovered, checks.sources_considered, checks.frame_offset_arcsec,
         checks.flux_ratio_median) = source_recovery(cat_file, sim_dir, snr_column, snr_cut, radius)
    return checks
