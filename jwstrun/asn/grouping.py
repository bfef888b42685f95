"""Grouping exposures: the ``--group-by`` keys, how each is read from a header, and groups."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import InputError
from ..products import ExposureInfo

_EMPTY_VALUES = ("", "N/A", "NONE", "NULL", "ANY", "--")


def _clean(value: str) -> str:
    value = (value or "").strip().upper()
    return "" if value in _EMPTY_VALUES else value


def _nircam_only(attr: str):
    def get(info: ExposureInfo) -> str:
        return _clean(getattr(info, attr)) if info.instrument.upper() == "NIRCAM" else ""

    return get


def _number(value: str, width: int) -> str:
    value = (value or "").strip()
    return value.zfill(width) if value.isdigit() else value


#: Keys accepted by ``--group-by`` and how each is read from an exposure.
GROUP_KEYS = {
    "program": lambda e: _number(e.program, 5),
    "observation": lambda e: _number(e.observation, 3),
    "visit": lambda e: _number(e.visit, 3),
    "instrument": lambda e: _clean(e.instrument),
    "detector": lambda e: _clean(e.detector),
    "module": _nircam_only("module"),
    "channel": _nircam_only("channel"),
    "filter": lambda e: _clean(e.filter),
    "pupil": lambda e: _clean(e.pupil),
    "subarray": lambda e: _clean(e.subarray),
    "exp_type": lambda e: _clean(e.exp_type),
    "target": lambda e: e.target.strip(),
    "bkgdtarg": lambda e: "T" if e.background_target else "F",
}

#: Default grouping: the DMS Level-3 imaging rules (jwst.associations.lib.rules_level3:
#: ``Asn_Lv3Image``, and ``Asn_Lv3ImageBackground`` for BKGDTARG=T exposures) on the
#: observation candidates that every exposure belongs to: one product per observation,
#: program, instrument, optical path (filter, pupil, subarray) and target, background
#: targets apart from science.  The detectors, NIRCam modules and visits of one
#: observation are combined, as in DMS products (add ``module`` or ``detector`` to split
#: them).  The candidates that join observations (c1xxx, declared in APT) are not in
#: FITS headers: ``merge_observations`` is the explicit way to join them.
DEFAULT_GROUP_BY = (
    "program", "observation", "instrument", "filter", "pupil", "subarray", "target", "bkgdtarg",
)

# What a background exposure must share with a science exposure to be subtracted
# from it by calwebb_image2's background step (same pixels, same optical path).
_BACKGROUND_MATCH = ("instrument", "detector", "filter", "pupil", "subarray")


@dataclass
class ExposureGroup:
    """Exposures sharing the values of the group-by keys."""

    key: dict[str, str]
    exposures: list[ExposureInfo]

    @property
    def label(self) -> str:
        """``NIRCAM/LONG/F444W/CLEAR``-style label of the key values."""
        return "/".join(v or "-" for v in self.key.values())


def parse_group_by(
    text: str | Sequence[str] | None, merge_observations: bool = False
) -> tuple[str, ...]:
    """``"program,filter"`` or ``"default"`` -> validated tuple of group keys.

    ``merge_observations`` drops ``observation`` from the default keys: one product
    per target and optical path across observations (a ``c1000`` candidate name).
    """
    if text is None:
        text = "default"
    items = text.split(",") if isinstance(text, str) else list(text)
    keys: list[str] = []
    for item in items:
        item = item.strip().lower().replace("-", "_")
        if not item:
            continue
        if item == "default":
            keys.extend(
                k for k in DEFAULT_GROUP_BY
                if k not in keys and not (merge_observations and k == "observation")
            )
        elif item in GROUP_KEYS:
            if item == "observation" and merge_observations:
                raise InputError(
                    "--merge-observations: --group-by lists 'observation', which keeps "
                    "observations apart; leave one of the two out."
                )
            if item not in keys:
                keys.append(item)
        else:
            raise InputError(
                f"--group-by: unknown key '{item}'. Use 'default' or a comma-separated list of: "
                f"{', '.join(GROUP_KEYS)}."
            )
    if not keys:
        raise InputError(
            f"--group-by: no keys given. Use 'default' or some of: {', '.join(GROUP_KEYS)}."
        )
    return tuple(keys)


def group_exposures(
    exposures: Iterable[ExposureInfo], keys: Sequence[str] = DEFAULT_GROUP_BY
) -> list[ExposureGroup]:
    """Split exposures into groups sharing the values of ``keys`` (sorted, deterministic)."""
    keys = parse_group_by(list(keys))
    groups: dict[tuple[str, ...], list[ExposureInfo]] = defaultdict(list)
    for info in exposures:
        groups[tuple(GROUP_KEYS[k](info) for k in keys)].append(info)
    return [
        ExposureGroup(dict(zip(keys, values, strict=True)), sorted(members, key=lambda e: e.name))
        for values, members in sorted(groups.items())
    ]
