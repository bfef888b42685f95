"""Absolute astrometry offline: tweakreg's ``abs_refcat``, checked before anything runs,
and a large local catalogue cut to the inputs' footprints.

tweakreg (jwst 3.0, through ``stcal.tweakreg.tweakreg._parse_refcat``) takes for
``abs_refcat`` either

- a *name* it fetches over the network at run time (``stcal.tweakreg.SINGLE_GROUP_REFCAT``:
  ``GAIAREFCAT``, ``GAIADR3``, ``GAIADR2``, ``GAIADR1`` from the STScI catalogue service
  ``ASTROMETRIC_CATALOG_URL`` (default https://gsss.stsci.edu/webservices), ``GAIADR3_S3``
  from STScI's public S3 bucket), compared in upper case and tried before any file, or
- a *file* read with ``astropy.table.Table.read`` (any format astropy recognises:
  ECSV, FITS...) holding one ``RA`` and one ``DEC`` column (any case) or one
  ``sky_centroid`` column.  Nothing else is read from a file: proper motions and an
  epoch are ignored, the positions are used as they are.  The fit needs at least
  ``abs_minobj`` catalogue sources (tweakreg counts the whole file, then needs that
  many matches).

:func:`check_abs_refcat` refuses, before anything runs, what would make tweakreg
skip the absolute alignment at run time (it then only logs a warning and records
FAILED): a missing or unreadable file, a file without the columns, a catalogue with
fewer than ``abs_minobj`` sources inside the inputs' footprints (their ``S_REGION``),
a name that is not one of tweakreg's, and a named catalogue when the run is offline.

Offline rule: a run is offline when its CRDS set-up has no server (``--offline``,
``--crds-path`` without ``CRDS_SERVER_URL``, a serverless URL: :class:`~jwstrun.refs.setup.CrdsSetup`
``.serverless``); a named catalogue is then refused without any network use.  With a
CRDS server configured, the catalogue service itself is probed (a TCP connect of at
most :data:`~jwstrun.refs.env.PROBE_TIMEOUT_SECONDS`, never longer) and the name is
refused when it does not answer.

:func:`cut_catalogue` (``jwstrun refs refcat``) makes such a file from a large local
catalogue (a Gaia download): the sources inside the inputs' footprints plus a margin,
with their positions moved by their proper motions to the inputs' epoch (linear in
RA/Dec, which is good to well under a milliarcsecond over decades away from the poles;
parallax is left out), written atomically with the columns tweakreg reads.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import ConfigError, InputError, OutputError
from ..products import check_fits_complete, parse_s_region

__all__ = [
    "CATALOGUE_SERVICES",
    "Footprint",
    "RefcatCut",
    "read_footprints",
    "named_catalogues",
    "check_abs_refcat",
    "check_refcat_name",
    "read_refcat",
    "cut_catalogue",
]

log = logging.getLogger(__name__)

#: Where tweakreg fetches a named catalogue: the STScI catalogue service (its URL in
#: ``ASTROMETRIC_CATALOG_URL``, as stcal reads it) and STScI's public S3 bucket.
CATALOGUE_SERVICES = {
    "gsss": ("ASTROMETRIC_CATALOG_URL", "https://gsss.stsci.edu/webservices"),
    "s3": (None, "https://stpubdata.s3.amazonaws.com"),
}
_CUT_HINT = "`jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv`"
#: Column names, lower case, in the order they are looked for.
_EPOCH_COLUMNS = ("ref_epoch", "epoch")
_KEEP_COLUMNS = ("source_id", "objid", "phot_g_mean_mag", "mag", "ra_error", "dec_error")


# --------------------------------------------------------------------------- footprints


@dataclass
class Footprint:
    """One exposure's footprint on the sky (its S_REGION) and mid-exposure epoch."""

    path: Path
    polygons: list[list[tuple[float, float]]]
    epoch: float | None  # decimal year, None when the header has no date


def _epoch(primary) -> float | None:
    from astropy.time import Time

    for key in ("EXPMID", "EXPSTART"):
        try:
            return float(Time(float(primary[key]), format="mjd").decimalyear)
        except (KeyError, ValueError):
            pass
    date = primary.get("DATE-BEG") or primary.get("DATE-OBS")
    if date and "T" not in date and primary.get("TIME-OBS"):
        date = f"{date}T{primary['TIME-OBS']}"
    try:
        return float(Time(date).decimalyear) if date else None
    except ValueError:
        return None


def read_footprints(paths: Iterable[str | os.PathLike]) -> list[Footprint]:
    """The S_REGION footprints (SCI header, else primary) and epochs of exposure files;
    :class:`InputError` naming a file without one.  Headers only (astropy: S_REGION is a
    long string, continued over several cards)."""
    from astropy.io import fits

    found = []
    for path in map(Path, paths):
        check_fits_complete(path, required=("SCI",))
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            primary, sci = hdul[0].header, hdul["SCI"].header
            polygons = parse_s_region(sci.get("S_REGION") or primary.get("S_REGION"))
            epoch = _epoch(primary)
        if not polygons or not all(math.isfinite(c) for p in polygons for v in p for c in v):
            raise InputError(
                f"{path}: no valid S_REGION in its SCI header, so its footprint on the sky is "
                "unknown. Give _cal, _crf or _i2d files (calwebb_image2's assign_wcs writes it)."
            )
        found.append(Footprint(path, polygons, epoch))
    return found


def _unit(ra, dec) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _project(center: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Gnomonic (tangent-plane) coordinates in arcsec of unit vectors around ``center``."""
    east = np.cross([0.0, 0.0, 1.0], center)
    east = east / (np.linalg.norm(east) or 1.0) if np.linalg.norm(east) > 1e-12 else np.array(
        [0.0, 1.0, 0.0])
    north = np.cross(center, east)
    depth = xyz @ center
    scale = math.degrees(1.0) * 3600.0
    return np.stack([xyz @ east / depth, xyz @ north / depth], axis=-1) * scale


def _inside_polygon(points: np.ndarray, poly: np.ndarray, margin: float) -> np.ndarray:
    """Points (N, 2) inside the polygon (M, 2) or within ``margin`` of its edges."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    inside = (np.sum(crosses & (x < at), axis=1) % 2) == 1
    if margin <= 0:
        return inside
    dx, dy = x1 - x0, y1 - y0
    length2 = np.where(dx * dx + dy * dy > 0, dx * dx + dy * dy, 1.0)
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0)
    dist = np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)).min(axis=1)
    return inside | (dist <= margin)


def in_footprints(ra, dec, footprints: Sequence[Footprint], margin_arcsec: float = 0.0) -> np.ndarray:
    """Boolean mask: which (ra, dec) (degrees) fall inside any of ``footprints`` (or
    within ``margin_arcsec`` of one)."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    xyz = _unit(ra, dec)
    mask = np.zeros(len(ra), bool)
    for fp in footprints:
        for polygon in fp.polygons:
            corners = _unit(*np.array(polygon, float).T)
            center = corners.sum(axis=0)
            center /= np.linalg.norm(center)
            radius = np.arccos(np.clip(corners @ center, -1, 1)).max()
            near = np.flatnonzero(~mask & (xyz @ center > math.cos(
                radius + math.radians(margin_arcsec / 3600.0))))
            if near.size:
                mask[near] = _inside_polygon(_project(center, xyz[near]),
                                             _project(center, corners), margin_arcsec)
    return mask


# --------------------------------------------------------------------------- names


def named_catalogues() -> list[str]:
    """The catalogue names tweakreg fetches over the network (the installed stcal's list)."""
    from stcal.tweakreg.tweakreg import SINGLE_GROUP_REFCAT

    return list(SINGLE_GROUP_REFCAT)


def _could_be_name(value: str) -> bool:
    return not any(c in value for c in "/\\.")


def _service_url(name: str) -> str:
    variable, default = CATALOGUE_SERVICES["s3" if name.endswith("_S3") else "gsss"]
    return (os.environ.get(variable) if variable else None) or default


def check_refcat_name(value: str, crds_env: Mapping[str, str] | None = None) -> str | None:
    """The upper-case catalogue name when ``value`` names one of tweakreg's catalogues
    and the network can serve it, None when ``value`` is not a name (a file);
    :class:`ConfigError` for a name tweakreg does not know (with the valid names) and
    for a named catalogue when the run is offline (see the module docstring)."""
    from .env import redact_url, server_reachable
    from .setup import crds_setup

    if not _could_be_name(value):
        return None
    names = named_catalogues()
    name = value.upper()
    if name not in names and Path(value).expanduser().exists():
        return None  # a file without a suffix (tweakreg tries the names first, as here)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"abs_refcat {value!r}: no such file, and not a catalogue name tweakreg knows "
            f"({', '.join(names)}). {hint}Give one of those names or the path of a "
            f"catalogue file with RA and DEC columns, e.g. made by {_CUT_HINT}."
        )
    url = _service_url(name)
    offline = crds_setup(crds_env).serverless
    reachable, detail = (False, "") if offline else server_reachable(url)
    if reachable:
        return name
    why = ("this run is offline (no CRDS server: --offline, --crds-path without "
           "CRDS_SERVER_URL, or a serverless CRDS_SERVER_URL)" if offline else
           f"it does not answer here ({detail})")
    raise ConfigError(
        f"abs_refcat {name}: tweakreg fetches this catalogue from {redact_url(url)} at run "
        f"time, and {why}. Download the catalogue where there is network and cut it to the "
        f"field: {_CUT_HINT}, then set abs_refcat to that file."
    )


# --------------------------------------------------------------------------- files


def _column(table, names: Iterable[str], path: Path, what: str):
    """The one column of ``table`` named any of ``names`` in any case, or None."""
    wanted = set(names)
    found = [c for c in table.colnames if c.lower() in wanted]
    if len(found) > 1:
        raise InputError(f"{path}: has several {what} columns ({', '.join(found)}), which "
                         "tweakreg cannot choose between (it ignores case). Keep one.")
    return found[0] if found else None


def read_refcat(path: str | os.PathLike, what: str = "abs_refcat"):
    """(table, ra, dec) of a catalogue file as tweakreg reads it (``Table.read``: ECSV,
    FITS...): ``ra``/``dec`` are float arrays in degrees from its RA/DEC columns (any
    case) or its ``sky_centroid``; :class:`InputError` naming the file otherwise."""
    import warnings

    from astropy.table import Table

    path = Path(path)
    where = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise InputError(f"{where}: no such file. Give the path of a catalogue file (ECSV or "
                         f"FITS with RA and DEC columns), e.g. made by {_CUT_HINT}.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{where}: cannot be read (permission denied). Make it readable "
                         "(chmod a+r) or give a copy you can read.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = Table.read(path)
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for junk
        first = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(
            f"{where}: astropy cannot read it as a table ({type(exc).__name__}: {first}); "
            "tweakreg reads it with astropy.table.Table.read. Give an ECSV or FITS table."
        ) from None
    ra_name = _column(table, ("ra",), path, "RA")
    dec_name = _column(table, ("dec",), path, "DEC")
    if ra_name and dec_name:
        ra, dec = table[ra_name], table[dec_name]
    elif "sky_centroid" in [c.lower() for c in table.colnames]:
        sky = table[_column(table, ("sky_centroid",), path, "sky_centroid")]
        ra, dec = sky.ra, sky.dec
    else:
        raise InputError(
            f"{where}: has no RA and DEC columns (it has {', '.join(table.colnames[:12]) or 'none'}"
            f"{', ...' if len(table.colnames) > 12 else ''}). tweakreg needs one RA and one DEC "
            "column in degrees (any case) or a sky_centroid column; rename them, or cut the "
            f"catalogue with {_CUT_HINT}."
        )
    return table, _degrees(ra), _degrees(dec)


def _degrees(column) -> np.ndarray:
    import astropy.units as u

    unit = getattr(column, "unit", None)
    values = getattr(column, "value", column)
    if unit is not None and str(unit) not in ("", "deg"):
        values = u.Quantity(np.ma.filled(np.ma.asarray(values, dtype=float), np.nan),
                            unit).to_value(u.deg)
    return np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)


def _catalogue_epoch(table) -> float | None:
    """The epoch of a catalogue's positions when it has proper motions, else None."""
    names = {c.lower(): c for c in table.colnames}
    if "pmra" not in names or "pmdec" not in names:
        return None
    for key in _EPOCH_COLUMNS:
        if key in names:
            values = np.ma.filled(np.ma.asarray(table[names[key]], dtype=float), np.nan)
            if np.isfinite(values).any():
                return float(np.nanmedian(values))
    for key, value in table.meta.items():
        if str(key).lower() in _EPOCH_COLUMNS:
            return float(value)
    return None


def check_abs_refcat(
    value: str | None,
    groups: Sequence[tuple[str, Sequence[Path]]],
    *,
    minobj: int = 15,
    crds_env: Mapping[str, str] | None = None,
) -> str | None:
    """Refuse an ``abs_refcat`` tweakreg could not use, before anything runs; return the
    catalogue name (upper case) or the file's absolute path (None when it is unset).

    ``groups`` are (name, exposure files) of each association tweakreg will align as a
    whole; each must hold at least ``minobj`` (tweakreg's ``abs_minobj``) catalogue
    sources inside its members' footprints.  A named catalogue is checked by
    :func:`check_refcat_name`.  Logs a warning when the file has proper motions at an
    epoch a year or more from the inputs' (tweakreg uses its positions as they are).
    """
    if value is None or not str(value).strip() or str(value).strip().lower() == "none":
        return None
    value = str(value).strip()
    name = check_refcat_name(value, crds_env)
    if name is not None:
        return name
    path = Path(value).expanduser()
    table, ra, dec = read_refcat(path)
    epoch = _catalogue_epoch(table)
    for product, files in groups:
        footprints = read_footprints(files)
        inside = int(in_footprints(ra, dec, footprints).sum())
        if inside < minobj:
            raise InputError(
                f"abs_refcat {path}: {inside} of its {len(table)} sources fall inside the "
                f"footprints of the {len(footprints)} exposure(s) of {product}; tweakreg needs at "
                f"least abs_minobj={minobj} to fit. Use a catalogue that covers this field "
                f"({_CUT_HINT} counts what it keeps) or lower abs_minobj."
            )
        epochs = [fp.epoch for fp in footprints if fp.epoch is not None]
        if epoch is not None and epochs and abs(np.mean(epochs) - epoch) >= 1.0:
            log.warning(
                "abs_refcat %s: positions at epoch %.1f with proper motions, %s observed at "
                "%.1f; tweakreg uses the positions as they are. Move them to the inputs' "
                "epoch with `jwstrun refs refcat %s INPUTS -o field.ecsv`.",
                path, epoch, product, float(np.mean(epochs)), path)
    return str(path.resolve())


# --------------------------------------------------------------------------- cutting


@dataclass
class RefcatCut:
    """What :func:`cut_catalogue` wrote."""

    output: str
    catalogue: str
    n_sources: int
    n_written: int
    n_exposures: int
    margin_arcsec: float
    epoch_from: float | None = None
    epoch_to: float | None = None
    n_without_motion: int = 0
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for the terminal."""
        moved = ""
        if self.epoch_to is not None:
            moved = (f", positions moved from epoch {self.epoch_from:.2f} to {self.epoch_to:.2f}"
                     + (f" ({self.n_without_motion} without proper motion left out)"
                        if self.n_without_motion else ""))
        return (f"Wrote {self.output}: {self.n_written} of {self.catalogue}'s {self.n_sources} "
                f"sources inside the footprints of {self.n_exposures} exposure(s) "
                f"(margin {self.margin_arcsec:g}\"){moved}.")


def _target_epoch(epoch: str | float | None, footprints: Sequence[Footprint]) -> float | None:
    if epoch is None or str(epoch).lower() in ("none", "catalogue", "catalog"):
        return None
    if str(epoch).lower() == "inputs":
        epochs = [fp.epoch for fp in footprints if fp.epoch is not None]
        if not epochs:
            raise InputError(f"{footprints[0].path}: no DATE-BEG/DATE-OBS or EXPSTART in its "
                             "header, so the inputs' epoch is unknown. Give --epoch YEAR.")
        return float(np.mean(epochs))
    try:
        return float(epoch)
    except ValueError:
        raise ConfigError(f"--epoch {epoch!r}: give 'inputs', 'catalogue' or a decimal year "
                          "such as 2024.5.") from None


def _moved(table, ra, dec, target: float, path: Path):
    """(ra, dec, keep, epoch_from) moved linearly by pmra/pmdec (mas/yr, pmra with the
    cos(dec) factor, as Gaia gives it) from the catalogue's epoch to ``target``."""
    names = {c.lower(): c for c in table.colnames}
    start = _catalogue_epoch(table)
    if start is None:
        raise InputError(
            f"{path}: has no proper motions (pmra, pmdec) with an epoch (ref_epoch or epoch "
            "column), so its positions cannot be moved to the inputs' epoch. Give "
            "--epoch catalogue to keep them as they are.")
    pmra = np.ma.filled(np.ma.asarray(table[names["pmra"]], dtype=float), np.nan)
    pmdec = np.ma.filled(np.ma.asarray(table[names["pmdec"]], dtype=float), np.nan)
    per_row = next((np.ma.filled(np.ma.asarray(table[names[k]], dtype=float), np.nan)
                    for k in _EPOCH_COLUMNS if k in names), np.full(len(table), start))
    dt = target - np.where(np.isfinite(per_row), per_row, start)
    keep = np.isfinite(pmra) & np.isfinite(pmdec)
    mas = 1.0 / 3.6e6
    new_dec = dec + np.nan_to_num(pmdec) * dt * mas
    new_ra = ra + np.nan_to_num(pmra) * dt * mas / np.cos(np.radians(0.5 * (dec + new_dec)))
    return new_ra % 360.0, new_dec, keep, start


def cut_catalogue(
    catalogue: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    margin_arcsec: float = 5.0,
    epoch: str | float | None = "inputs",
    force: bool = False,
) -> RefcatCut:
    """Cut ``catalogue`` to the footprints of ``inputs`` and write what tweakreg reads.

    ``inputs``: exposure files with an S_REGION (_cal, _crf, _i2d) or associations of
    them; ``margin_arcsec`` widens each footprint; ``epoch``: ``"inputs"`` (the mean
    mid-exposure epoch of the inputs) moves the positions by their proper motions when
    the catalogue has them, ``"catalogue"`` keeps them, a decimal year moves them
    there.  The output (ECSV, or FITS for a .fits name) has ``RA``, ``DEC`` (degrees)
    and ``epoch`` columns plus the identifiers, magnitudes and errors the catalogue had.
    """
    from astropy.table import Table

    from ..inputs import expand_inputs

    output = Path(output)
    if output.exists() and not force:
        raise OutputError(f"{output}: exists. Choose another name, or give --force to replace it.")
    if margin_arcsec < 0:
        raise ConfigError(f"--margin {margin_arcsec:g}: must be 0 or more (arcsec).")
    footprints = read_footprints(expand_inputs(inputs, suffixes=("cal", "crf"),
                                               members=True))
    path = Path(catalogue)
    table, ra, dec = read_refcat(path, what="")
    catalogue_epoch = _catalogue_epoch(table)
    target = None if str(epoch).lower() == "inputs" and catalogue_epoch is None else \
        _target_epoch(epoch, footprints)
    moving = np.ones(len(table), bool)
    if target is not None:
        ra, dec, moving, catalogue_epoch = _moved(table, ra, dec, target, path)
    finite = np.isfinite(ra) & np.isfinite(dec)
    inside = finite & in_footprints(np.where(finite, ra, 0.0), np.where(finite, dec, -90.0),
                                    footprints, margin_arcsec)
    written = inside & moving
    out = Table()
    out["RA"], out["DEC"] = ra[written], dec[written]
    out["RA"].unit = out["DEC"].unit = "deg"
    at = target if target is not None else catalogue_epoch
    if at is not None:
        out["epoch"] = np.full(int(written.sum()), at)
    names = {c.lower(): c for c in table.colnames}
    for key in (*_KEEP_COLUMNS, "pmra", "pmdec"):
        if key in names:
            out[names[key]] = table[names[key]][written]
    fmt = "fits" if output.suffix.lower() in (".fits", ".fit") else "ascii.ecsv"
    if fmt == "ascii.ecsv":
        out.meta = {"catalogue": str(path), "margin_arcsec": margin_arcsec, "epoch": at,
                    "inputs": [fp.path.name for fp in footprints]}
    atomic_write(output, lambda tmp: out.write(tmp, format=fmt, overwrite=True))
    return RefcatCut(
        output=str(output), catalogue=path.name, n_sources=len(table), n_written=int(written.sum()),
        n_exposures=len(footprints), margin_arcsec=margin_arcsec,
        epoch_from=catalogue_epoch if target is not None else None, epoch_to=target,
        n_without_motion=int((inside & ~moving).sum()), columns=list(out.colnames),
    )
