"""The detector geometry the simulated references carry, from the SIAF polynomials.

- :func:`siaf_distortion_model`: the REAL distortion, composed from the SIAF
  polynomials pysiaf ships (the ``<prefix>_FULL`` aperture), with an inverse
  refitted to the exact forward; written as the ``distortion`` reference.
- :func:`relative_area_map`: the pixel area relative to the nominal SIAF pixel
  area (Jacobian of Sci2Idl); written as the ``area`` reference.
- :func:`pixel_area_arcsec2`, :func:`pixel_area_sr`: the nominal pixel area
  (PIXAR_A2, PIXAR_SR of the photom and area references).

The distortion model is built once per detector and kept
(:func:`jwstrun.simulate.clear_caches` forgets it).
"""

from __future__ import annotations

import math
from functools import lru_cache

from .instruments import Detector, siaf_aperture

__all__ = [
    "pixel_area_arcsec2",
    "pixel_area_sr",
    "siaf_distortion_model",
    "relative_area_map",
    "clear_caches",
]

_ARCSEC2_TO_SR = (math.pi / 180.0 / 3600.0) ** 2


def pixel_area_arcsec2(detector: Detector) -> float:
    """Nominal pixel area (arcsec^2): SIAF ``XSciScale * YSciScale`` of the full aperture."""
    ap = siaf_aperture(detector, "FULL")
    return float(ap.XSciScale) * float(ap.YSciScale)


def pixel_area_sr(detector: Detector) -> float:
    """Nominal pixel area in steradians, as written to PIXAR_SR of the photom and area refs."""
    return pixel_area_arcsec2(detector) * _ARCSEC2_TO_SR


def _fit_poly2d(x, y, z, degree: int):
    """Least-squares astropy Polynomial2D z(x, y); x and y should lie within [-1, 1]."""
    import numpy as np
    from astropy.modeling.models import Polynomial2D

    poly = Polynomial2D(degree)
    terms = []
    for name in poly.param_names:  # c{i}_{j}: x**i * y**j
        i, j = (int(n) for n in name[1:].split("_"))
        terms.append(x**i * y**j)
    # Normal equations on inputs scaled to [-1, 1]: well enough conditioned for degree 8
    # (tests check the round trip), and a 45 x 45 solve instead of LAPACK's lstsq,
    # which is slow when OpenBLAS threads compete on a loaded machine (simulation
    # times: docs/benchmarks.md, "simulate").
    a = np.stack(terms, axis=1)
    poly.parameters = np.linalg.solve(a.T @ a, a.T @ z)
    return poly


def _fit_inverse(sci2idl_x, sci2idl_y, nx: int, ny: int, xref: float, yref: float):
    """Ideal (arcsec, scaled by 1/s) -> science offset polynomials fitted to the forward.

    SIAF's own Idl2Sci polynomials are a separate fit whose round trip is off by up to
    0.006 pixel on NIRCam and 0.11 pixel in MIRI's detector corners; resample and
    outlier_detection's blot use this inverse, so it is refitted to the exact forward
    (degree 8 on a 61 x 61 grid: round trip better than 1e-3 pixel everywhere).
    """
    import numpy as np

    u, v = np.meshgrid(np.linspace(0, nx - 1, 61) + 1 - xref, np.linspace(0, ny - 1, 61) + 1 - yref)
    u, v = u.ravel(), v.ravel()
    x_idl, y_idl = sci2idl_x(u, v), sci2idl_y(u, v)
    scale = float(max(np.abs(x_idl).max(), np.abs(y_idl).max()))
    inv_x = _fit_poly2d(x_idl / scale, y_idl / scale, u, 8)
    inv_y = _fit_poly2d(x_idl / scale, y_idl / scale, v, 8)
    return scale, inv_x, inv_y


def siaf_distortion_model(detector: Detector):
    """Detector (0-based pixels) -> V2V3 (arcsec) model from the SIAF polynomials, with inverse.

    Forward: ``Shift(1 - XSciRef) & Shift(1 - YSciRef)`` (0-based pixel to SIAF
    science pixel relative to the reference pixel) | Sci2Idl X, Y polynomials |
    ideal -> V2V3 rotation (VIdlParity, V3IdlYAngle) + (V2Ref, V3Ref), the planar
    approximation pysiaf uses by default. Inverse: the exact inverse rotation, then
    ideal -> science polynomials fitted to the forward (see :func:`_fit_inverse`).
    Returns a new model on every call (callers may modify it).
    """
    return _siaf_distortion_model(detector).copy()


@lru_cache(maxsize=8)
def _siaf_distortion_model(detector: Detector):
    from astropy.modeling.models import Mapping, Polynomial2D, Scale, Shift

    ap = siaf_aperture(detector, "FULL")
    sci2idl_x, sci2idl_y = ap.distortion_transform("sci", "idl")
    parity = float(ap.VIdlParity)
    angle = math.radians(float(ap.V3IdlYAngle))
    cos, sin = math.cos(angle), math.sin(angle)
    v2ref, v3ref = float(ap.V2Ref), float(ap.V3Ref)
    xref, yref = float(ap.XSciRef), float(ap.YSciRef)
    scale, idl2sci_x, idl2sci_y = _fit_inverse(
        sci2idl_x, sci2idl_y, int(ap.XSciSize), int(ap.YSciSize), xref, yref
    )

    # ideal -> V2V3 (JWST-001550 sect. 4.3)
    idl2v2 = Polynomial2D(1, c0_0=v2ref, c1_0=parity * cos, c0_1=sin)
    idl2v3 = Polynomial2D(1, c0_0=v3ref, c1_0=-parity * sin, c0_1=cos)
    # V2V3 -> ideal: the exact inverse of the rotation above (offsets removed first)
    v22idl = Polynomial2D(1, c1_0=parity * cos, c0_1=-parity * sin)
    v32idl = Polynomial2D(1, c1_0=sin, c0_1=cos)

    forward = (
        (Shift(1.0 - xref) & Shift(1.0 - yref))
        | Mapping((0, 1, 0, 1))
        | (sci2idl_x & sci2idl_y)
        | Mapping((0, 1, 0, 1))
        | (idl2v2 & idl2v3)
    )
    inverse = (
        (Shift(-v2ref) & Shift(-v3ref))
        | Mapping((0, 1, 0, 1))
        | (v22idl & v32idl)
        | (Scale(1.0 / scale) & Scale(1.0 / scale))
        | Mapping((0, 1, 0, 1))
        | (idl2sci_x & idl2sci_y)
        | (Shift(xref - 1.0) & Shift(yref - 1.0))
    )
    forward.inverse = inverse
    forward.name = f"{detector.name}_siaf_distortion"
    return forward


def _poly_partials(poly, u, v):
    """d/du and d/dv of an astropy Polynomial2D on the grid ``v[:, None], u[None, :]``."""
    import numpy as np

    degree = poly.degree
    coeff = {name: float(getattr(poly, name).value) for name in poly.param_names}
    du = np.zeros((v.size, u.size))
    dv = np.zeros((v.size, u.size))
    for i in range(degree + 1):  # power of u
        # 1-D polynomials in v for the u**(i-1) (d/du) and u**i (d/dv) columns
        pdu = np.zeros(v.size)
        pdv = np.zeros(v.size)
        for j in range(degree + 1 - i):
            c = coeff.get(f"c{i}_{j}", 0.0)
            if c == 0.0:
                continue
            if i > 0:
                pdu += i * c * v**j
            if j > 0:
                pdv += j * c * v ** (j - 1)
        if i > 0:
            du += np.outer(pdu, u ** (i - 1))
        dv += np.outer(pdv, u**i)
    return du, dv


def relative_area_map(detector: Detector):
    """Pixel area relative to PIXAR_A2: |det J| of Sci2Idl, on a coarse grid, spline-interpolated.

    The Jacobian of a degree-5 polynomial is smooth over the detector: a 16-pixel grid
    and a bicubic spline reproduce it to ~1e-7, far cheaper than every pixel
    (simulation times: docs/benchmarks.md, "simulate").
    """
    import numpy as np
    from scipy.interpolate import RectBivariateSpline

    ap = siaf_aperture(detector, "FULL")
    sx, sy = ap.distortion_transform("sci", "idl")
    nx, ny = int(ap.XSciSize), int(ap.YSciSize)
    u_full = np.arange(nx, dtype=float) + 1.0 - float(ap.XSciRef)
    v_full = np.arange(ny, dtype=float) + 1.0 - float(ap.YSciRef)
    u = np.unique(np.r_[u_full[::16], u_full[-1]])
    v = np.unique(np.r_[v_full[::16], v_full[-1]])
    dxdu, dxdv = _poly_partials(sx, u, v)
    dydu, dydv = _poly_partials(sy, u, v)
    coarse = np.abs(dxdu * dydv - dxdv * dydu) / pixel_area_arcsec2(detector)
    spline = RectBivariateSpline(v, u, coarse, kx=3, ky=3)
    return spline(v_full, u_full).astype(np.float32)


def clear_caches() -> None:
    """Forget the distortion models built so far (built again on next use)."""
    _siaf_distortion_model.cache_clear()
