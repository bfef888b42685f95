"""The other files a MAST download holds beside the imaging exposures (``--extra``).

- ``ta``: a target-acquisition exposure, ``EXP_TYPE`` NRC_TACQ (NIRCam, F210M or F335M
  on the SUB64P subarray) or MIR_TACQ (MIRI, F560W on SUB64), a small ``_rate``, in the
  first science visit's first visit group (``..._01101_...``), as TA comes first;
- ``grism``: a wide-field slitless exposure, NRC_WFSS with ``PUPIL`` GRISMR and F444W on
  the long-wave detector of the first detector's module, in an observation of its own
  (on the program's subarray to stay small; real WFSS exposures are full frame); for
  MIRI the nearest mode, MIR_LRS-SLITLESS with the P750L prism on SLITLESSPRISM;
- ``uncal``: the raw ramps of the first science exposure, ``<its name>_uncal.fits``: a
  Level1bModel (DATAMODL as DMS writes it) with a 4-D uint16 SCI of three groups.

Their headers are those of a real product (EXP_TYPE, DATAMODL, FILTER/PUPIL, SUBARRAY
and SIAF reference point, DMS names); their pixels carry no truth: they are there for
the commands that must leave them out.  They draw from a generator of their own, so the
science exposures are the same with or without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._save import save_model
from .instruments import aperture_geometry, get_detector, siaf_aperture, valid_subarrays

__all__ = ["EXTRAS", "write_extras"]

#: what ``--extra`` takes
EXTRAS = ("ta", "grism", "uncal")

_UNCAL_GROUPS = 3
_BIAS_DN = 12000


def write_extras(outdir: Path, first_rate: Path, observations: int, subarray: str,
                 extras, seed: int) -> list[Path]:
    """Write the ``extras`` (a subset of :data:`EXTRAS`, each once) next to the
    program's files; ``first_rate`` is its first science exposure, ``observations`` the
    number of observations it has (the grism exposure takes the next one)."""
    rng = np.random.default_rng([seed, 23])
    written = []
    for extra in dict.fromkeys(extras):
        if extra == "ta":
            written.append(_write_ta(outdir, first_rate, rng))
        elif extra == "grism":
            written.append(_write_grism(outdir, first_rate, observations + 1, subarray, rng))
        elif extra == "uncal":
            written.append(_write_uncal(first_rate))
        else:
            raise ValueError(f"unknown extra {extra!r}; choose from {', '.join(EXTRAS)}")
    return written


def _dms_name(program: str, observation: str, visit: str, visit_group: str, detector: str,
              suffix: str = "rate") -> str:
    return (f"jw{program}{observation}{visit}_{visit_group}101_00001_{detector.lower()}"
            f"_{suffix}.fits")


def _write_ta(outdir: Path, first_rate: Path, rng) -> Path:
    from stdatamodels.jwst import datamodels

    with datamodels.open(first_rate) as source:
        det = get_detector(source.meta.instrument.detector)
        if det.instrument == "MIRI":
            mode = dict(exp_type="MIR_TACQ", filter="F560W", pupil=None, subarray="SUB64")
        else:
            mode = dict(exp_type="NRC_TACQ", filter="F335M" if det.channel == "LONG" else "F210M",
                        pupil="CLEAR", subarray="SUB64P")
        obs = source.meta.observation
        path = outdir / _dms_name(obs.program_number, obs.observation_number, obs.visit_number,
                                  "01", det.name)
        _write_variant(source, path, det, visit_group="01", rng=rng, **mode)
    return path


def _write_grism(outdir: Path, first_rate: Path, observation: int, subarray: str, rng) -> Path:
    from stdatamodels.jwst import datamodels

    with datamodels.open(first_rate) as source:
        det = get_detector(source.meta.instrument.detector)
        if det.instrument == "MIRI":
            mode = dict(exp_type="MIR_LRS-SLITLESS", filter="P750L", pupil=None,
                        subarray="SLITLESSPRISM")
        else:
            det = get_detector(f"NRC{det.module}LONG")
            sub = subarray if subarray in valid_subarrays(det) else "FULL"
            mode = dict(exp_type="NRC_WFSS", filter="F444W", pupil="GRISMR", subarray=sub)
        obs = source.meta.observation
        number = f"{observation:03d}"
        path = outdir / _dms_name(obs.program_number, number, "001", "02", det.name)
        _write_variant(source, path, det, visit_group="02", observation=number, visit="001",
                       rng=rng, **mode)
    return path


def _write_variant(source, path: Path, det, *, exp_type: str, filter: str, pupil,
                   subarray: str, visit_group: str, rng, observation: str | None = None,
                   visit: str | None = None) -> None:
    """A ``_rate`` ImageModel with ``source``'s header, another mode and a sky of noise."""
    from stdatamodels.jwst.datamodels import ImageModel

    xstart, ystart, xsize, ysize = aperture_geometry(det, subarray)
    sky = float(np.nanmedian(source.data))
    noise = max(float(np.nanmedian(source.err)), 1e-3)
    model = ImageModel((ysize, xsize))
    model.update(source)
    model.data = (sky + noise * rng.standard_normal((ysize, xsize))).astype(np.float32)
    model.err = np.full((ysize, xsize), noise, dtype=np.float32)
    model.var_poisson = np.full((ysize, xsize), noise**2 * 0.9, dtype=np.float32)
    model.var_rnoise = np.full((ysize, xsize), noise**2 * 0.1, dtype=np.float32)
    model.dq = np.zeros((ysize, xsize), dtype=np.uint32)
    meta = model.meta
    meta.exposure.type = exp_type
    meta.exposure.nints = 1  # a _rate, whatever the science exposures are
    meta.instrument.detector = det.name
    meta.instrument.filter = filter
    meta.instrument.pupil = pupil
    if det.channel:
        meta.instrument.channel = det.channel
    meta.subarray.name = subarray
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = xsize, ysize
    meta.aperture.name = f"{det.siaf_prefix}_{subarray}"
    aperture = siaf_aperture(det, subarray)
    meta.wcsinfo.v2_ref = float(aperture.V2Ref)
    meta.wcsinfo.v3_ref = float(aperture.V3Ref)
    meta.wcsinfo.vparity = int(aperture.VIdlParity)
    meta.wcsinfo.v3yangle = float(aperture.V3IdlYAngle)
    meta.wcsinfo.siaf_xref_sci = float(aperture.XSciRef)
    meta.wcsinfo.siaf_yref_sci = float(aperture.YSciRef)
    obs = meta.observation
    obs.observation_number = observation or obs.observation_number
    obs.visit_number = visit or obs.visit_number
    obs.visit_group = visit_group
    obs.sequence_id, obs.activity_id, obs.exposure_number = "1", "01", "00001"
    obs.visit_id = f"{obs.program_number}{obs.observation_number}{obs.visit_number}"
    obs.obs_id = f"V{obs.visit_id}P0000000{visit_group}101"
    obs.bkgdtarg = False
    meta.filename = path.name
    meta.model_type = "ImageModel"
    save_model(model, path)
    model.close()


def _write_uncal(first_rate: Path) -> Path:
    """The first science exposure's raw ramps: bias plus its count rate, group by group."""
    from stdatamodels.jwst import datamodels

    name = first_rate.name.replace("_rateints.fits", "_uncal.fits").replace(
        "_rate.fits", "_uncal.fits")
    path = first_rate.with_name(name)
    with datamodels.open(first_rate) as source:
        rate = np.nan_to_num(source.data if source.data.ndim == 2 else source.data[0])
        nints = int(source.meta.exposure.nints or 1)
        group_time = float(source.meta.exposure.group_time or 1.0)
        groups = np.arange(1, _UNCAL_GROUPS + 1, dtype=np.float64)[:, None, None]
        ramp = np.clip(_BIAS_DN + groups * group_time * rate, 0, 65535).astype(np.uint16)
        model = datamodels.Level1bModel(
            data=np.broadcast_to(ramp, (nints, *ramp.shape)).copy())
        model.update(source)
    model.meta.exposure.ngroups = _UNCAL_GROUPS
    model.meta.bunit_data = "DN"
    model.meta.filename = path.name
    model.meta.model_type = "Level1bModel"
    save_model(model, path)
    model.close()
    return path
