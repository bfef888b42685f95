"""Where jwstrun keeps what it learned by importing jwst.pipeline (specs, reftypes).

Importing ``jwst.pipeline`` costs about 3 s; what profiles and refs need from it
depends only on the installed jwst and stpipe, so it is cached on disk under
``$XDG_CACHE_HOME/jwstrun/`` (``~/.cache/jwstrun``), keyed by their versions and
install locations.  ``JWSTRUN_NO_SPEC_CACHE`` turns the cache off.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NO_CACHE_VARIABLE", "installed_versions", "pipeline_cache_path"]

NO_CACHE_VARIABLE = "JWSTRUN_NO_SPEC_CACHE"


def installed_versions() -> dict[str, str]:
    """Installed jwst and stpipe versions ("missing" when not installed)."""
    from importlib import metadata

    out = {}
    for dist in ("jwst", "stpipe"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def pipeline_cache_path(kind: str, format_version: str = "") -> Path | None:
    """``.../jwstrun/pipeline-<kind>-jwst<version>-<digest>.json``, or None when disabled."""
    if os.environ.get(NO_CACHE_VARIABLE):
        return None
    import hashlib
    import importlib.util

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    versions = installed_versions()
    # versions alone miss editable/dev installs of jwst: key on where it lives too
    key = [format_version, versions["jwst"], versions["stpipe"]]
    for dist in ("jwst", "stpipe"):
        found = importlib.util.find_spec(dist)
        origin = Path(found.origin) if found and found.origin else None
        if origin is not None and origin.exists():
            key += [str(origin), str(origin.stat().st_mtime_ns)]
    digest = hashlib.sha1("|".join(key).encode()).hexdigest()[:12]
    return Path(base) / "jwstrun" / f"pipeline-{kind}-jwst{versions['jwst']}-{digest}.json"
