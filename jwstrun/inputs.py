"""The one input expander every command uses: files, glob patterns, directories
and (optionally) the members of association files -> a list of paths.

- A path that exists is taken as given (made absolute, its name kept: a symlink
  is not replaced by its target in messages and product names).
- A pattern with ``*``, ``?`` or ``[`` is expanded (``~`` too) and must match.
- A directory means "the FITS files in it" (not recursive), limited to the
  product types the command takes when ``suffixes`` is given.
- ``members=True`` replaces an association JSON file by its members' files.
- The same file reached twice (a symlink, a hard link, a repeated argument) is
  used once, with a warning naming both.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError

__all__ = ["expand_inputs", "association_members", "is_association"]

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


def is_association(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".json"


def expand_inputs(
    patterns: Iterable[str | os.PathLike],
    *,
    suffixes: Sequence[str] | None = None,
    members: bool = False,
) -> list[Path]:
    """Expand ``patterns`` into absolute paths, each file once (see the module docstring).

    ``suffixes`` (product types such as ``("rate", "rateints")``, or a suffix with
    its extension such as ``"cat.ecsv"``) select the files a directory contributes; ``members`` expands association files into
    their members.  Raises :class:`InputError` naming the pattern or file.
    """
    paths: list[Path] = []
    seen: dict = {}  # (device, inode) -> the name first given for that file
    for pattern in patterns:
        for match in _matches(str(pattern), suffixes):
            _check_name(match)
            candidates = association_members(Path(match)) if members and is_association(match) \
                else [Path(match)]
            for candidate in candidates:
                key = _identity(candidate)
                if key not in seen:
                    seen[key] = str(candidate)
                    paths.append(candidate.absolute())
                elif os.path.abspath(candidate) != os.path.abspath(seen[key]):
                    log.warning("%s: is the same file as %s; using it once.", candidate, seen[key])
    if not paths:
        raise InputError("no inputs given.")
    return paths


def _matches(text: str, suffixes: Sequence[str] | None) -> list[str]:
    if os.path.exists(text):
        if os.path.isdir(text):
            return _directory_files(text, suffixes)
        return [text]
    if _GLOB_CHARS & set(text):
        matches = sorted(glob.glob(os.path.expanduser(text)))
        if not matches:
            raise InputError(f"{text}: no files match this pattern. Check the path.")
        files = [m for m in matches if not os.path.isdir(m)]
        for directory in (m for m in matches if os.path.isdir(m)):
            files.extend(_directory_files(directory, suffixes))
        return files
    raise InputError(f"{text}: file not found. Check the path or the glob pattern.")


def _directory_files(directory: str, suffixes: Sequence[str] | None) -> list[str]:
    """The FITS files in a directory (of the given product types), sorted."""
    ends = tuple(f"_{s}" if "." in s else f"_{s}.fits" for s in suffixes) if suffixes else (".fits",)
    found = sorted(
        str(Path(directory) / entry.name)
        for entry in os.scandir(directory)
        if entry.name.lower().endswith(ends) and not entry.name.startswith(".")
        and entry.is_file()
    )
    if not found:
        wanted = ", ".join(f"*{end}" for end in ends)
        raise InputError(f"{directory}: is a directory with no {wanted} files in it. "
                         "Give the directory that holds them, or the files.")
    return found


def _check_name(match: str) -> None:
    name = os.path.basename(match)
    if not (name.isascii() and name.isprintable()):
        raise InputError(
            f"{match!r}: the file name has a newline, control or non-ASCII character, "
            "which FITS headers (FILENAME) cannot hold. Rename the file."
        )


def _identity(path: Path):
    try:
        stat = path.resolve().stat()
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return path.resolve()  # planning says what is wrong with it


def association_members(path: Path) -> list[Path]:
    """The member files of an association JSON, each checked to exist.

    A light read for commands that only need the files (prefetching CRDS
    references); the stages load and check associations with :mod:`jwstrun.asn`.
    """
    if not path.is_file():
        raise InputError(f"{path}: association file not found.")
    try:
        asn = json.loads(path.read_text())
        members = [m for product in asn["products"] for m in product["members"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a JWST association (expected JSON with products[].members[].expname): "
            f"{exc}"
        ) from exc
    result = []
    for member in members:
        name = member.get("expname") if isinstance(member, dict) else None
        if not name:
            raise InputError(f"{path}: a member has no 'expname'.")
        member_path = Path(name) if os.path.isabs(name) else path.parent / name
        if not member_path.exists():
            raise InputError(f"{path}: member {name} not found at {member_path}.")
        result.append(member_path)
    return result
