"""jwst's own association schemas (Level 2b and Level 3), found without importing jwst.

The schema of each level is read from the installed jwst package once and kept
(:func:`_load_schema`, an ``lru_cache``); :func:`jwstrun.asn.clear_caches`
forgets it, e.g. after jwst was upgraded under a long-lived session.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

_SCHEMA_FILE = {2: "asn_schema_jw_level2b.json", 3: "asn_schema_jw_level3.json"}


def _schema_path(level: int) -> Path | None:
    # Locate jwst's own schema file without importing jwst (importing jwst.associations
    # costs far more than reading one JSON file).
    from importlib.util import find_spec

    spec = find_spec("jwst")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "associations"
        / "lib"
        / _SCHEMA_FILE[level]
    )
    return path if path.is_file() else None


@lru_cache(maxsize=None)
def _load_schema(level: int) -> dict | None:
    """jwst's schema for ``level`` (cached), or None when jwst's schema file is not found."""
    schema_path = _schema_path(level)
    if schema_path is None:  # pragma: no cover - jwst is a dependency
        return None
    return json.loads(schema_path.read_text())


def _validate_schema(data: dict, level: int, path: Path) -> None:
    schema = _load_schema(level)
    if schema is None:  # pragma: no cover - jwst is a dependency
        log.debug("jwst association schema not found; schema check skipped")
        return
    import jsonschema

    errors = sorted(
        jsonschema.Draft4Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if errors:
        error = errors[0]
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise InputError(
            f"{path}: does not follow jwst's Level-{level} association schema at {where}: "
            f"{error.message}. Rebuild it with 'jwstrun asn'."
        )
