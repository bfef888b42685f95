"""Where jwstrun keeps what it learned by importing jwst.pipeline (specs, reftypes)
or the datamodel schemas (FITS locations of CRDS matching keys).

Importing ``jwst.pipeline`` costs about 3 s and loading the datamodel schemas
about 4 s; what profiles and refs need from them depends only on the installed
packages, so it is cached on disk under ``$XDG_CACHE_HOME/jwstrun/``
(``~/.cache/jwstrun``), keyed by their versions and install locations.
``JWSTRUN_NO_SPEC_CACHE`` turns the cache off.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["NO_CACHE_VARIABLE", "cached_json", "installed_versions", "pipeline_cache_path"]

NO_CACHE_VARIABLE = "JWSTRUN_NO_SPEC_CACHE"


def installed_versions(dists: tuple[str, ...] = ("jwst", "stpipe")) -> dict[str, str]:
    """Installed versions of ``dists`` ("missing" when not installed)."""
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def pipeline_cache_path(
    kind: str, format_version: str = "", dists: tuple[str, ...] = ("jwst", "stpipe")
) -> Path | None:
    """``.../jwstrun/pipeline-<kind>-<dist><version>-<digest>.json``, or None when disabled.

    The digest covers the versions and install locations of ``dists`` (what the
    cached facts were read from).
    """
    if os.environ.get(NO_CACHE_VARIABLE):
        return None
    import hashlib
    import importlib.util

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    versions = installed_versions(dists)
    # versions alone miss editable/dev installs of jwst: key on where it lives too
    key = [format_version, *versions.values()]
    for dist in dists:
        found = importlib.util.find_spec(dist)
        origin = Path(found.origin) if found and found.origin else None
        if origin is not None and origin.exists():
            key += [str(origin), str(origin.stat().st_mtime_ns)]
    digest = hashlib.sha1("|".join(key).encode()).hexdigest()[:12]
    first = dists[0]
    return Path(base) / "jwstrun" / f"pipeline-{kind}-{first}{versions[first]}-{digest}.json"


def cached_json(path: Path | None, build: Callable[[], Any], accept: Callable[[Any], bool]) -> Any:
    """The JSON document at ``path`` if ``accept`` likes it, else ``build()`` (then saved).

    The file is replaced atomically (readers see the old one or the whole new
    one); an unreadable or unwritable cache (read-only home) only costs time.
    """
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            if accept(data):
                return data
        except (OSError, ValueError):
            log.debug("ignoring unreadable cache %s", path)
    data = build()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot write cache %s: %s", path, exc)
    return data
