"""Member paths, relative to the association's directory in both directions.

calwebb_image3 resolves members relative to the association file while
calwebb_image2 opens background members, and members with a directory part,
relative to the working directory (jwst issue 5950; jwstrun's runner gives it a
copy with absolute paths then), so the two agree only when members are bare
names or lie below the association's directory: members outside it are refused
unless explicitly allowed, when writing (:func:`_member_name`) and when reading
(:func:`_resolve_member`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)


def _absolute(path: str | os.PathLike) -> Path:
    # Lexical, not resolve(): a member that is a symlink keeps the name the user gave it
    # (data linked into a work directory stays a bare name there).
    return Path(os.path.abspath(path))


def _member_name(path: str | os.PathLike, asn_dir: Path, allow_outside: bool) -> str:
    target = _absolute(path)
    if target.parent == asn_dir:
        return target.name
    rel = Path(os.path.relpath(target, asn_dir))
    if rel.parts and rel.parts[0] == "..":
        if not allow_outside:
            raise InputError(
                f"{path}: lies outside the association's directory {asn_dir}. calwebb_image2 and "
                "calwebb_image3 resolve such member paths differently; write the association "
                "into the data directory (or a parent of it), or pass --allow-outside to "
                "write relative paths with '..'."
            )
        log.warning("%s: outside the association's directory; written as %s", path, rel.as_posix())
    return rel.as_posix()


def _resolve_member(path: Path, asn_dir: Path, expname: str, allow_outside: bool) -> Path:
    member = Path(expname)
    resolved = Path(os.path.normpath(member if member.is_absolute() else asn_dir / member))
    if not allow_outside and (".." in member.parts or not resolved.is_relative_to(asn_dir)):
        raise InputError(
            f"{path}: member {expname} lies outside the association's directory {asn_dir}. "
            "calwebb_image2 and calwebb_image3 resolve such paths differently; keep "
            "members in (or below) the association's directory, or rebuild it with "
            "'jwstrun asn' next to the data."
        )
    return resolved
