"""How a simulated program is laid out, as on the telescope.

* One **observation** per instrument (in the order the detectors were given).
* Within it, one **exposure set** per filter set: an APT activity of visit group
  02, sequence 1, numbered as DMS numbers NIRCam imaging (``_02101``, ``_02103``,
  ``_02105``, ...: the filter changes between them). Science exposures are in
  visit 001, dedicated background exposures in visit 002 with the same sets.
* Every **exposure** of a set is read out on all the observation's detectors at
  once: NIRCam short-wave (SW) and long-wave (LW) detectors simultaneously, one
  SW filter and one LW filter. The files of one exposure share the exposure id
  (``jw01234001001_02101_00001_nrcb1``, ``..._nrcb2``, ``..._nrcblong``) and one
  telescope pointing, so one pointing error moves them all together.

SW/LW pairing follows NIRCam: the i-th SW filter given is paired with the i-th
LW filter; the channel with fewer filters repeats its last one (F090W+F277W,
F150W+F277W); a channel with none uses its default (F200W SW, F444W LW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from .instruments import Detector, FilterInfo, default_detector, get_detector, get_filter

__all__ = ["ExposureSet", "Pointing", "plan_exposure_sets", "pointing_reference",
           "detector_pointings", "base36", "module_detectors"]


@dataclass(frozen=True)
class ExposureSet:
    """The detectors of one observation read out together, each with its filter."""

    observation: int  # OBSERVTN
    activity: int  # ACT_ID: 1, 3, 5, ...
    members: tuple[tuple[Detector, FilterInfo], ...]

    @property
    def instrument(self) -> str:
        return self.members[0][0].instrument

    @property
    def filters(self) -> list[str]:
        """The set's filters, each once (SW then LW as given)."""
        names: list[str] = []
        for _, filt in self.members:
            if filt.name not in names:
                names.append(filt.name)
        return names


@dataclass(frozen=True)
class Pointing:
    """Where one detector's aperture reference point looks, and the V1 axis."""

    ra_ref: float
    dec_ref: float
    roll_ref: float  # position angle of V3 at the reference point
    ra_v1: float
    dec_v1: float
    pa_v3: float


def base36(number: int, width: int = 2) -> str:
    """DMS numbers ACT_ID in base 36: 1 -> ``01``, 11 -> ``0b``, 17 -> ``0h``."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return text.rjust(width, "0")


def _unique(names) -> list[str]:
    seen: list[str] = []
    for name in names:
        key = name.strip().upper()
        if key not in seen:
            seen.append(key)
    return seen


def module_detectors(module: str) -> list[str]:
    """The NIRCam detectors of module ``A``, ``B`` or ``ALL`` (SW 1-4, then LW)."""
    modules = "AB" if module.upper() == "ALL" else module.upper()
    return [f"NRC{m}{i}" for m in modules for i in (1, 2, 3, 4)] + [f"NRC{m}LONG" for m in modules]


def _channel(det: Detector) -> str:
    return f"{det.instrument}:{det.channel or ''}"


def plan_exposure_sets(instrument, detectors, filters) -> list[ExposureSet]:
    """The program's observations and exposure sets from ``--detector``/``--filter``.

    Raises InputError for an unknown detector, a detector of another instrument
    than ``instrument``, or a filter none of the detectors has (the message names
    the detectors that have it, or lists the first detector's filters).
    """
    names = _unique(detectors) or [default_detector(instrument or "NIRCAM")]
    dets = [get_detector(d) for d in names]
    if instrument:
        wrong = [d.name for d in dets if d.instrument != instrument.upper()]
        if wrong:
            raise InputError(
                f"detector(s) {', '.join(wrong)} do not belong to instrument {instrument.upper()}."
            )
    wanted = _unique(filters)
    for name in wanted:
        if not any(name in d.filter_names for d in dets):
            _refuse_filter(name, dets)
    instruments = list(dict.fromkeys(d.instrument for d in dets))
    sets: list[ExposureSet] = []
    for obs_index, inst in enumerate(instruments, start=1):
        obs_dets = [d for d in dets if d.instrument == inst]
        per_channel: dict[str, list[FilterInfo]] = {}
        for det in obs_dets:
            if _channel(det) not in per_channel:
                usable = [n for n in wanted if n in det.filter_names] or [det.default_filter]
                per_channel[_channel(det)] = [get_filter(det, n) for n in usable]
        n_sets = max(len(f) for f in per_channel.values())
        for k in range(n_sets):
            members = tuple(
                (det, per_channel[_channel(det)][min(k, len(per_channel[_channel(det)]) - 1)])
                for det in obs_dets
            )
            sets.append(ExposureSet(observation=obs_index, activity=2 * k + 1, members=members))
    return sets


def _refuse_filter(name: str, dets: list[Detector]) -> None:
    """A filter none of the detectors has: name the detectors that have it, or list the valid ones."""
    from .instruments import DETECTORS

    owners = [d.name for d in DETECTORS.values() if name in d.filter_names]
    if not owners:
        get_filter(dets[0], name)  # raises: unknown filter for <first detector>, Valid: ...
    given = ", ".join(d.name for d in dets)
    raise InputError(
        f"filter {name} is not on the detector(s) given ({given}) but on {', '.join(owners)}. "
        f"Add --detector {owners[-1]}, or leave --filter {name} out."
    )


def pointing_reference(apertures) -> tuple[float, float]:
    """V2, V3 (arcsec) the telescope puts on the target: the centre of the apertures'
    reference points (the aperture's own reference point for one detector)."""
    v2 = [float(a.V2Ref) for a in apertures]
    v3 = [float(a.V3Ref) for a in apertures]
    return sum(v2) / len(v2), sum(v3) / len(v3)


def detector_pointings(reference, ra: float, dec: float, roll: float, apertures) -> list[Pointing]:
    """Each aperture's RA_REF, DEC_REF, ROLL_REF for one telescope attitude.

    The attitude puts V2/V3 ``reference`` on (``ra``, ``dec``) with V3 at position
    angle ``roll`` there (pysiaf's attitude matrix, the rotation jwst's assign_wcs
    inverts), so all detectors of an exposure share one pointing.
    """
    from .instruments import siaf_rotations

    rotations = siaf_rotations()
    v2p, v3p = reference
    att = rotations.attitude(v2p, v3p, ra, dec, roll)
    ra_v1, dec_v1 = (float(v) for v in rotations.pointing(att, 0.0, 0.0))
    pa_v3 = float(rotations.posangle(att, 0.0, 0.0)) % 360.0
    out = []
    for aperture in apertures:
        v2, v3 = float(aperture.V2Ref), float(aperture.V3Ref)
        if math.isclose(v2, v2p, abs_tol=1e-9) and math.isclose(v3, v3p, abs_tol=1e-9):
            ra_ref, dec_ref, roll_ref = ra, dec, roll  # the aperture on the target: exact
        else:
            ra_ref, dec_ref = (float(v) for v in rotations.pointing(att, v2, v3))
            roll_ref = float(rotations.posangle(att, v2, v3)) % 360.0
        out.append(Pointing(ra_ref, dec_ref, roll_ref, ra_v1, dec_v1, pa_v3))
    return out
