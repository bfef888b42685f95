"""The simulated sky: point sources and galaxies on a tangent plane, rendered
onto detector pixels through a local linearisation of the pipeline's own WCS.

Sources are placed with the exposure's gWCS (built by jwst's assign_wcs from
the simulated distortion reference): the forward transform plus a Newton
iteration gives each source's pixel position and the local Jacobian, which
maps the source's on-sky shape into pixel space.  No made-up linear WCS.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Scene",
    "make_scene",
    "sky_to_pixel",
    "render_sources",
    "snr_to_flux_e",
    "psf_ee_radius",
    "psf_encircled_energy",
    "moffat_alpha",
    "clear_caches",
]

ARCSEC = 1.0 / 3600.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: The PSF is a circular Moffat profile: a core of the filter's FWHM with the
#: extended wings of a real telescope PSF (a Gaussian has none, which makes
#: faint stars far more compact than JWST's).
MOFFAT_BETA = 2.5


def moffat_alpha(fwhm: float) -> float:
    """Moffat core width alpha for a given FWHM (same units)."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))


def psf_encircled_energy(fwhm: float, radius: float) -> float:
    """Fraction of the Moffat PSF's flux within ``radius`` (same units as ``fwhm``)."""
    alpha = moffat_alpha(fwhm)
    return 1.0 - (1.0 + (radius / alpha) ** 2) ** (1.0 - MOFFAT_BETA)


def psf_ee_radius(fwhm_pixels: float, fraction: float, boxes: int = 2) -> float:
    """Radius (pixels) enclosing ``fraction`` of the PSF as measured on a resampled image.

    The optical PSF is integrated over the detector pixel and again over the
    drizzle kernel (square, pixfrac 1): it is convolved with ``boxes`` unit
    boxes, numerically on a fine grid.
    """
    radii, cumulative = _ee_curve(round(float(fwhm_pixels), 4), boxes)
    return float(np.interp(fraction, cumulative, radii))


@lru_cache(maxsize=64)
def _ee_curve(fwhm_pixels: float, boxes: int):
    step = 0.1
    half = int(math.ceil((12.0 * fwhm_pixels + 4.0) / step))
    coords = (np.arange(-half, half + 1)) * step
    xx, yy = np.meshgrid(coords, coords)
    alpha = moffat_alpha(fwhm_pixels)
    image = (1.0 + (xx**2 + yy**2) / alpha**2) ** (-MOFFAT_BETA)
    if boxes:
        from scipy.ndimage import uniform_filter

        for _ in range(boxes):
            image = uniform_filter(image, size=int(round(1.0 / step)), mode="constant")
    image /= image.sum()
    r = np.hypot(xx, yy).ravel()
    order = np.argsort(r)
    return r[order], np.cumsum(image.ravel()[order])


def clear_caches() -> None:
    """Forget the PSF encircled-energy curves computed so far."""
    _ee_curve.cache_clear()


@dataclass
class Scene:
    """Sources on the sky.  Fluxes are in Jy (flat f_nu spectrum)."""

    ra: np.ndarray
    dec: np.ndarray
    flux_jy: np.ndarray
    kind: np.ndarray  # "point" or "galaxy"
    r_eff_arcsec: np.ndarray  # 0 for point sources
    axis_ratio: np.ndarray
    pa_deg: np.ndarray

    def __len__(self) -> int:
        return len(self.ra)

    @property
    def abmag(self) -> np.ndarray:
        return -2.5 * np.log10(self.flux_jy / 3631.0)


def snr_to_flux_e(snr, npix, bkg_e, rn_e, n_exp, ap_frac):
    """Total source electrons per exposure that give a combined S/N of ``snr``.

    Aperture photometry in ``n_exp`` exposures: S/N = sqrt(n) * a S /
    sqrt(a S + npix (B + R^2)), solved for S.
    """
    per_exp = np.asarray(snr, dtype=float) / math.sqrt(n_exp)
    noise2 = npix * (bkg_e + rn_e**2)
    # a^2 S^2 - q^2 a S - q^2 noise2 = 0
    a = ap_frac
    disc = per_exp**4 * a**2 + 4 * a**2 * per_exp**2 * noise2
    return (per_exp**2 * a + np.sqrt(disc)) / (2 * a**2)


def make_scene(
    rng: np.random.Generator,
    ra0: float,
    dec0: float,
    half_width_arcsec: float,
    n_points: int,
    n_galaxies: int,
    point_flux_jy_range: tuple[float, float],
    galaxy_flux_jy_range: tuple[float, float],
    min_separation: tuple[float, float] = (0.0, 0.0),
) -> Scene:
    """Uniformly scattered sources in a square of the tangent plane around (ra0, dec0).

    ``min_separation`` = (point-point, any-galaxy) in arcsec keeps sources apart
    so that the recovery checks measure the pipeline, not blending; the
    ``crowded`` use case simply passes (0, 0).
    """
    n = n_points + n_galaxies
    xi, eta, n_points, n_galaxies = _isolated_positions(
        rng, half_width_arcsec, n_points, n_galaxies, min_separation
    )
    n = n_points + n_galaxies
    ra, dec = _tangent_to_sky(ra0, dec0, xi, eta)
    lo, hi = np.log10(point_flux_jy_range)
    flux = 10 ** rng.uniform(lo, hi, n)
    glo, ghi = np.log10(galaxy_flux_jy_range)
    flux[n_points:] = 10 ** rng.uniform(glo, ghi, n_galaxies)
    kind = np.array(["point"] * n_points + ["galaxy"] * n_galaxies)
    r_eff = np.zeros(n)
    r_eff[n_points:] = rng.uniform(0.08, 0.4, n_galaxies)
    q = np.ones(n)
    q[n_points:] = rng.uniform(0.35, 1.0, n_galaxies)
    pa = rng.uniform(0, 180, n)
    return Scene(ra, dec, flux, kind, r_eff, q, pa)


def _isolated_positions(rng, half_width, n_points, n_galaxies, min_separation):
    """Galaxies first, then point sources, each drawn until it keeps its distance."""
    sep_point, sep_galaxy = min_separation
    placed = np.zeros((0, 2))
    is_galaxy = np.zeros(0, bool)
    out_gal, out_pts = [], []
    for want_galaxy, count in ((True, n_galaxies), (False, n_points)):
        for _ in range(count):
            for _attempt in range(50):
                p = rng.uniform(-half_width, half_width, 2)
                if len(placed):
                    d = np.hypot(*(placed - p).T)
                    need = np.where(is_galaxy | want_galaxy, sep_galaxy, sep_point)
                    if np.any(d < need):
                        continue
                placed = np.vstack([placed, p])
                is_galaxy = np.append(is_galaxy, want_galaxy)
                (out_gal if want_galaxy else out_pts).append(p)
                break
    pos = np.array(out_pts + out_gal).reshape(-1, 2)
    # order: points then galaxies (Scene convention)
    return pos[:, 0], pos[:, 1], len(out_pts), len(out_gal)


def _tangent_to_sky(ra0, dec0, xi_arcsec, eta_arcsec):
    """Gnomonic projection inverse: tangent-plane offsets (arcsec) to RA/Dec (deg)."""
    xi = np.radians(np.asarray(xi_arcsec) * ARCSEC)
    eta = np.radians(np.asarray(eta_arcsec) * ARCSEC)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    denom = math.cos(d0) - eta * math.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def offset_sky(ra, dec, dxi_arcsec, deta_arcsec):
    """Move a position by small tangent-plane offsets (arcsec)."""
    new_ra, new_dec = _tangent_to_sky(ra, dec, np.atleast_1d(dxi_arcsec), np.atleast_1d(deta_arcsec))
    return float(new_ra[0]), float(new_dec[0])


def sky_to_pixel(wcs, ra, dec, guess_xy=None, iterations=12):
    """Pixel positions (0-based) and local Jacobians of sky positions through ``wcs``.

    Uses the forward transform with a Newton iteration (gWCS's numerical
    inverse can diverge for wide-field distortions).  Returns ``x, y, jac``
    with ``jac[i]`` the 2x2 matrix d(xi, eta)[arcsec] / d(x, y)[pixel].
    """
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    if guess_xy is None:
        try:
            x, y = wcs.invert(ra, dec, with_bounding_box=False)
            x, y = np.asarray(x, float), np.asarray(y, float)
        except Exception:  # noqa: BLE001 - any failure: start from the reference pixel
            x = np.zeros_like(ra)
            y = np.zeros_like(ra)
        bad = ~np.isfinite(x) | ~np.isfinite(y)
        x[bad], y[bad] = 0.0, 0.0
    else:
        x, y = (np.array(v, dtype=float) for v in guess_xy)
    cosd = np.cos(np.radians(dec))
    h = 0.5
    jac = np.zeros((len(ra), 2, 2))
    for _ in range(iterations):
        r0, d0 = wcs(x, y, with_bounding_box=False)
        rx, dx = wcs(x + h, y, with_bounding_box=False)
        ry, dy = wcs(x, y + h, with_bounding_box=False)
        # tangent-plane derivatives in arcsec per pixel
        jac[:, 0, 0] = _dra(rx, r0) * cosd * 3600 / h
        jac[:, 1, 0] = (dx - d0) * 3600 / h
        jac[:, 0, 1] = _dra(ry, r0) * cosd * 3600 / h
        jac[:, 1, 1] = (dy - d0) * 3600 / h
        res = np.stack([_dra(ra, r0) * cosd * 3600, (dec - d0) * 3600], axis=-1)
        step = np.linalg.solve(jac, res[..., None])[..., 0]
        x = x + step[:, 0]
        y = y + step[:, 1]
        if np.nanmax(np.abs(step), initial=0.0) < 1e-6:
            break
    return x, y, jac


def _dra(a, b):
    """RA difference wrapped to [-180, 180) degrees."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def render_sources(
    shape,
    x,
    y,
    jac,
    total_dn,
    scene: Scene,
    fwhm_arcsec: float,
    oversample: int = 5,
) -> np.ndarray:
    """Render sources (total counts ``total_dn`` each) into an image of ``shape``.

    Each source is a Moffat PSF (circular on the sky) or, for galaxies,
    an exponential disk convolved with that PSF (approximated by adding the PSF
    variance to the disk's second moments, then drawn as a Sersic n=1 profile).
    The on-sky covariance is mapped to pixels with the local Jacobian, and the
    profile is integrated over pixels by ``oversample``-fold sub-sampling.
    """
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    sigma_psf = fwhm_arcsec * _FWHM_TO_SIGMA
    alpha_psf = moffat_alpha(fwhm_arcsec)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        inv_jac = np.linalg.inv(jac[i])
        is_galaxy = scene.kind[i] == "galaxy"
        if is_galaxy:
            # exponential disk: r_eff -> scale length h = r_eff / 1.678; <r^2> per axis = 3 h^2
            h = scene.r_eff_arcsec[i] / 1.678
            theta = math.radians(scene.pa_deg[i])
            rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
            var = np.diag([h**2, (h * scene.axis_ratio[i]) ** 2])
            cov_sky = rot @ var @ rot.T
        else:
            cov_sky = np.eye(2) * 0.0
        cov_psf_pix = inv_jac @ (np.eye(2) * sigma_psf**2) @ inv_jac.T
        cov_moffat_pix = inv_jac @ (np.eye(2) * alpha_psf**2) @ inv_jac.T
        cov_gal_pix = inv_jac @ cov_sky @ inv_jac.T
        if is_galaxy:
            extent_sq = np.max(np.linalg.eigvalsh(cov_psf_pix + 6.0 * cov_gal_pix))
            radius = int(math.ceil(5.0 * math.sqrt(extent_sq))) + 2
        else:
            # Moffat wings: 10 alpha holds all but 0.1% of the flux at beta 2.5
            radius = int(math.ceil(10.0 * math.sqrt(np.max(np.linalg.eigvalsh(cov_moffat_pix))))) + 1
        x0, x1 = int(math.floor(x[i])) - radius, int(math.floor(x[i])) + radius + 1
        y0, y1 = int(math.floor(y[i])) - radius, int(math.floor(y[i])) + radius + 1
        if x1 < 0 or y1 < 0 or x0 >= nx or y0 >= ny:
            continue
        xs = (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
        ys = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
        dx = xs[None, :] - x[i]
        dy = ys[:, None] - y[i]
        if is_galaxy:
            profile = _exp_disk_with_psf(dx, dy, cov_gal_pix, cov_psf_pix)
        else:
            profile = _moffat2d(dx, dy, cov_moffat_pix)
        profile = profile.reshape(y1 - y0, oversample, x1 - x0, oversample).sum(axis=(1, 3))
        norm = profile.sum()
        if norm <= 0:
            continue
        stamp = profile / norm * total_dn[i]
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x1, nx), min(y1, ny)
        image[cy0:cy1, cx0:cx1] += stamp[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return image


def _moffat2d(dx, dy, cov_alpha):
    inv = np.linalg.inv(cov_alpha)
    q = inv[0, 0] * dx**2 + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy**2
    return (1.0 + q) ** (-MOFFAT_BETA)


def _exp_disk_with_psf(dx, dy, cov_gal, cov_psf):
    """Exponential disk with scale matrix ``cov_gal`` blurred by a Gaussian PSF.

    Drawn as exp(-sqrt(q)) on the combined second moments: a smooth extended
    profile with the right size, orientation and PSF-limited core.
    """
    cov = cov_gal + cov_psf
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * dx**2 + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy**2
    return np.exp(-np.sqrt(q))
