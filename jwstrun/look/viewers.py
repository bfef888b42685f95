"""Hand a product to an image viewer: ginga, glue or SAOImage DS9.

:func:`view_file` opens a product in a viewer window (detached);
:func:`load_in_viewer` loads it through the viewer's own API without a window
(what ``jwstrun view --check`` and the tests use); :func:`viewer_status` says
what is installed here.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import InputError, JwstrunError
from ..products import product_type, read_primary_header

__all__ = ["VIEWERS", "viewer_status", "load_in_viewer", "view_file"]

#: viewer -> (executable, Python module needed, install hint)
VIEWERS = {
    "ginga": ("ginga", "ginga", "pip install ginga PyQt5"),
    "glue": ("glue", "glue", "pip install glue-qt"),
    "ds9": ("ds9", None, "install SAOImage DS9 (Debian/Ubuntu: 'apt-get install saods9'; "
            "others: https://sites.google.com/cfa.harvard.edu/saoimageds9)"),
}
_QT_BINDINGS = ("PyQt5", "PyQt6", "PySide6", "PySide2")


def _find_executable(name: str) -> str | None:
    # The venv's own bin directory first: a pip-installed viewer lives next to python
    # even when the venv is not activated.
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def viewer_status(viewer: str) -> dict:
    """Whether a viewer can load files here and can open a window: a dict with a hint."""
    import importlib.util

    if viewer not in VIEWERS:
        raise InputError(f"unknown viewer {viewer!r}; choose one of {', '.join(VIEWERS)}.")
    executable, module, hint = VIEWERS[viewer]
    has_module = module is None or importlib.util.find_spec(module) is not None
    exe = _find_executable(executable)
    qt = [b for b in _QT_BINDINGS if importlib.util.find_spec(b) is not None] if module else []
    can_load = has_module and (module is not None)
    can_open = exe is not None and (module is None or (has_module and bool(qt)))
    return {"viewer": viewer, "executable": exe, "python_module": has_module if module else None,
            "qt_binding": qt[0] if qt else None, "can_load": can_load, "can_open": can_open,
            "hint": hint}


def _missing_viewer(viewer: str, what: str) -> JwstrunError:
    hint = VIEWERS[viewer][2]
    action = hint if hint.startswith("install") else f"install it with '{hint}'"
    return JwstrunError(f"{viewer} {what}; {action}. Or make PNG quick looks with 'jwstrun preview'.")


def load_in_viewer(path: str | os.PathLike, viewer: str = "ginga") -> dict:
    """Load a product through the viewer's own image-loading API, no window.

    ginga: ``AstroImage.load_file`` on the SCI extension; glue:
    ``glue.core.data_factories.load_data``.  Returns what the viewer saw
    (shape, units, a pixel's sky position from its WCS).
    """
    path = Path(path)
    header = read_primary_header(path)
    ptype = product_type(path, header)
    status = viewer_status(viewer)
    if viewer == "ds9":
        raise JwstrunError("ds9 has no Python loading API; use --with ginga or glue with --check.")
    if not status["python_module"]:
        raise _missing_viewer(viewer, "is not installed")
    if viewer == "ginga":
        from ginga.AstroImage import AstroImage

        image = AstroImage(logger=logging.getLogger("ginga"))
        try:
            image.load_file(str(path), idx="SCI" if ptype != "segm" else 1)
        except Exception as exc:  # noqa: BLE001 - the viewer's own error, named
            raise InputError(f"{path}: ginga cannot load it ({exc}).") from exc
        data = image.get_data()
        ny, nx = data.shape[-2:]
        try:
            ra, dec = image.pixtoradec(nx / 2, ny / 2)
        except Exception:  # noqa: BLE001 - no celestial WCS
            ra = dec = None
        return {"viewer": "ginga", "path": str(path), "shape": list(data.shape),
                "bunit": image.get_keyword("BUNIT", None), "name": image.get("name"),
                "center_radec": None if ra is None else [float(ra), float(dec)]}
    from glue.core.data_factories import load_data

    try:
        data = load_data(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: glue cannot load it ({exc}).") from exc
    items = data if isinstance(data, list) else [data]
    first = items[0]
    return {"viewer": "glue", "path": str(path), "shape": list(first.shape),
            "components": [str(c) for c in first.components], "bunit": None,
            "center_radec": None}


def view_file(path: str | os.PathLike, viewer: str | None = None) -> dict:
    """Open a product in a viewer window (ginga, glue or ds9); returns the process info.

    ``viewer=None`` takes the first of ginga, glue, ds9 that can open a window.
    The viewer runs detached; jwstrun does not wait for it.
    """
    path = Path(path)
    read_primary_header(path)  # clear error for a missing or broken file, before any launch
    names = [viewer] if viewer else list(VIEWERS)
    statuses = [viewer_status(v) for v in names]
    usable = [s for s in statuses if s["can_open"]]
    if not usable:
        no_qt = [s for s in statuses if s["python_module"] and not s["qt_binding"]]
        if no_qt:
            name = no_qt[0]["viewer"]
            raise JwstrunError(
                f"{name} is installed but has no Qt binding to open a window; install one with "
                f"'pip install PyQt5'. Or load the file without a window: "
                f"jwstrun view {path} --with {name} --check."
            )
        if viewer:
            raise _missing_viewer(viewer, "is not installed")
        raise JwstrunError(
            "no image viewer found (ginga, glue, ds9). Install one: 'pip install ginga PyQt5' "
            "or 'pip install glue-qt', or SAOImage DS9. Or make PNG quick looks with 'jwstrun preview'."
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise JwstrunError(
            f"no display to open {usable[0]['viewer']} on (DISPLAY is not set). Use ssh -X, or "
            f"make PNG quick looks with 'jwstrun preview {path} -o previews/'."
        )
    chosen = usable[0]
    command = [chosen["executable"], str(path)]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise JwstrunError(f"cannot start {chosen['viewer']} ({exc}).") from exc
    return {"viewer": chosen["viewer"], "command": command, "pid": process.pid}
