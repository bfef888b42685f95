"""Dedicated background exposures (``BKGDTARG = T``) in Level-2 associations.

calwebb_image2's background step subtracts from a science exposure the exposures
listed as ``exptype: background`` members of its product; a background exposure
given as a product of its own would be calibrated as science.  Both ``jwstrun
asn`` and ``jwstrun image2`` go through this module, so a folder as MAST
delivers it (science and dedicated backgrounds side by side) gives the same
association either way:

- :func:`split_backgrounds` tells the dedicated backgrounds from the science
  exposures (``BKGDTARG``, :func:`jwstrun.products.is_background_target`);
- :func:`match_backgrounds` gives each science exposure the backgrounds with its
  instrument, detector, filter, pupil and subarray;
- :func:`report_backgrounds` says in one line what was used, and which science
  exposures have none (their background step is skipped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import InputError
from ..products import ExposureInfo
from .grouping import _BACKGROUND_MATCH, GROUP_KEYS, ExposureGroup
from .members import _absolute

__all__ = ["BackgroundMatch", "split_backgrounds", "match_backgrounds", "report_backgrounds"]

log = logging.getLogger(__name__)

_MATCHED_KEYS = "instrument, detector, filter, pupil and subarray"


def split_backgrounds(
    exposures: Iterable[ExposureInfo],
) -> tuple[list[ExposureInfo], list[ExposureInfo]]:
    """``(science, backgrounds)``: the exposures whose header says ``BKGDTARG = T`` are
    dedicated backgrounds, the others science (order kept).

    Raises :class:`InputError` when there are backgrounds but no science exposure:
    a background is only ever used in the background step of science exposures.
    """
    science: list[ExposureInfo] = []
    backgrounds: list[ExposureInfo] = []
    for info in exposures:
        (backgrounds if info.background_target else science).append(info)
    if backgrounds and not science:
        more = f" (and {len(backgrounds) - 1} more)" if len(backgrounds) > 1 else ""
        raise InputError(
            f"{backgrounds[0].path}{more}: is a dedicated background exposure (BKGDTARG=T) and "
            "no science exposure was given. Background exposures are subtracted from science "
            "exposures by calwebb_image2's background step, never calibrated as science: give "
            "the science exposures too."
        )
    return science, backgrounds


def _background_key(info: ExposureInfo) -> tuple[str, ...]:
    """What a background must share with a science exposure (``_BACKGROUND_MATCH``)."""
    return tuple(GROUP_KEYS[k](info) for k in _BACKGROUND_MATCH)


def _describe_key(info: ExposureInfo) -> str:
    return "/".join(v or "-" for v in _background_key(info))


@dataclass
class BackgroundMatch:
    """The backgrounds of each science exposure (``matched``: science path -> backgrounds)."""

    science: list[ExposureInfo]
    backgrounds: list[ExposureInfo]
    matched: dict[str, list[ExposureInfo]]

    @property
    def used(self) -> list[ExposureInfo]:
        """The backgrounds matching at least one science exposure."""
        paths = {b.path for found in self.matched.values() for b in found}
        return [b for b in self.backgrounds if b.path in paths]

    @property
    def unused(self) -> list[ExposureInfo]:
        used = {b.path for b in self.used}
        return [b for b in self.backgrounds if b.path not in used]

    @property
    def without(self) -> list[ExposureInfo]:
        """The science exposures no background matches."""
        return [s for s in self.science if not self.matched.get(s.path)]


def match_backgrounds(
    science: Sequence[ExposureInfo], backgrounds: Sequence[ExposureInfo]
) -> BackgroundMatch:
    """Each science exposure's backgrounds: same instrument, detector, filter, pupil and
    subarray (same pixels, same optical path), never the exposure itself."""
    matched = {
        info.path: [
            bkg for bkg in backgrounds
            if _background_key(bkg) == _background_key(info)
            and _absolute(bkg.path) != _absolute(info.path)
        ]
        for info in science
    }
    return BackgroundMatch(list(science), list(backgrounds), matched)


def _matching_backgrounds(
    group: ExposureGroup, backgrounds: list[ExposureInfo]
) -> list[ExposureInfo]:
    """The backgrounds matching any exposure of ``group``."""
    wanted = {_background_key(e) for e in group.exposures}
    return [b for b in backgrounds if _background_key(b) in wanted]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def background_summary(match: BackgroundMatch, detected: Sequence[ExposureInfo]) -> str | None:
    """The one line saying which dedicated backgrounds (of ``detected``) are used for how
    many science exposures; None when none is used."""
    detected_paths = {b.path for b in detected}
    used = [b for b in match.used if b.path in detected_paths]
    if not used:
        return None
    served = [s for s in match.science
              if any(b.path in detected_paths for b in match.matched.get(s.path, ()))]
    return (
        f"Using {_count(len(used), 'dedicated background exposure')} (BKGDTARG=T) for the "
        f"background step of {_count(len(served), 'science exposure')}; "
        f"{'it is' if len(used) == 1 else 'they are'} not reduced as science."
    )


def report_backgrounds(
    match: BackgroundMatch, detected: Sequence[ExposureInfo] = (), explicit: bool = True
) -> None:
    """Say what was matched: the backgrounds found by their header (``detected``) in one
    line, each background matching nothing, and the science exposures left without one.

    When no background matches any science exposure and some were given explicitly
    (``explicit``: ``--background``), that is an :class:`InputError`; backgrounds
    found by their header among the inputs are then only reported unused.
    """
    if not match.backgrounds:
        return
    unused = match.unused
    if explicit and len(unused) == len(match.backgrounds):
        first = match.backgrounds[0]
        raise InputError(
            f"{first.path}: no background exposure matches any science exposure (this "
            f"one is {_describe_key(first)}; {_MATCHED_KEYS} must agree). Check the "
            "--background files."
        )
    summary = background_summary(match, detected)
    if summary:
        log.info(summary)
    for bkg in unused:
        log.warning("%s: background exposure matches no science exposure (%s); not used.",
                    bkg.path, _describe_key(bkg))
    without = match.without
    if without:
        log.warning(
            "%d science exposure(s) have no background exposure with the same %s (%s%s); "
            "their background step will be skipped.",
            len(without),
            _MATCHED_KEYS,
            ", ".join(e.name for e in without[:3]),
            ", ..." if len(without) > 3 else "",
        )
