"""JWST associations: build Level-2/Level-3 image associations, read and check them.

The JSON written here has the layout of jwst's own associations (the rules
``Asn_Lv2Image`` / ``Asn_Lv3Image``; what ``asn_from_list`` writes, with the DMS
``asn_type``), so ``jwst.associations.load_asn`` and the image2/image3 pipelines
read it unchanged.  Only primary FITS headers are read
(:func:`jwstrun.products.read_exposure_info`), never pixel data, and jwst itself is
not imported: building associations for a thousand exposures takes seconds.

Member paths are written relative to the association's directory (bare file
names when the members sit beside it); see :mod:`jwstrun.asn.members`.

Where things live:

- building: :mod:`.exposures` (reading headers, each exposure once), :mod:`.levels`
  (what each level takes, from :mod:`jwstrun.stages`), :mod:`.grouping`
  (``--group-by``), :mod:`.naming` (DMS product names), :mod:`.backgrounds`
  (dedicated backgrounds, BKGDTARG=T: found among the inputs, matched to the science
  exposures, reported), :mod:`.build` (Level-2/3 association dicts), :mod:`.write`
  (:func:`make_associations`, atomic writes);
- reading: :mod:`.read` (:func:`load_association`), :mod:`.schema` (jwst's
  schemas), :mod:`.check` (:func:`check_association`: members' headers).

Caches: jwst's association schemas and version are read once per process;
:func:`clear_caches` forgets them (e.g. after upgrading jwst in a notebook).
"""

from __future__ import annotations

from .backgrounds import BackgroundMatch, match_backgrounds, report_backgrounds, split_backgrounds
from .build import _jwst_version, build_level2, build_level3, level2_association
from .check import AssociationCheck, check_association
from .exposures import read_exposures, repeated_exposures
from .grouping import DEFAULT_GROUP_BY, GROUP_KEYS, ExposureGroup, group_exposures, parse_group_by
from .levels import IMAGING_EXP_TYPES, LEVEL_INPUTS, detect_level
from .naming import check_product_name, level3_product_name, target_numbers
from .read import AsnMember, AsnProduct, Association, load_association
from .schema import _load_schema
from .write import AsnBuildResult, WrittenAssociation, make_associations, write_association

__all__ = [
    "LEVEL_INPUTS",
    "IMAGING_EXP_TYPES",
    "GROUP_KEYS",
    "DEFAULT_GROUP_BY",
    "ExposureGroup",
    "AsnMember",
    "AsnProduct",
    "Association",
    "WrittenAssociation",
    "AsnBuildResult",
    "AssociationCheck",
    "BackgroundMatch",
    "split_backgrounds",
    "match_backgrounds",
    "report_backgrounds",
    "read_exposures",
    "repeated_exposures",
    "detect_level",
    "parse_group_by",
    "group_exposures",
    "target_numbers",
    "level3_product_name",
    "check_product_name",
    "build_level2",
    "level2_association",
    "build_level3",
    "write_association",
    "make_associations",
    "load_association",
    "check_association",
    "clear_caches",
]


def clear_caches() -> None:
    """Forget jwst's association schemas and version read so far (read again on next use)."""
    _load_schema.cache_clear()
    _jwst_version.cache_clear()
