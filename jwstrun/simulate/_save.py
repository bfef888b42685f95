"""Save a stdatamodels model so that no reader ever sees a half-written file.

The model is saved into a fresh temporary directory next to the target and
renamed over it (a rename of the file stdatamodels wrote, not a second writer:
:func:`jwstrun._io.atomic_write` would hand the writer a temporary *name*, and
stdatamodels records the name it is given in FILENAME). A crash never leaves a
file that looks finished (reference files that exist are reused), and two
simulations writing into one cache never interleave.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["save_model"]


def save_model(model, path: Path) -> None:
    """``model.save(path)`` through a temporary directory and a rename."""
    path = Path(path)
    tmpdir = Path(tempfile.mkdtemp(prefix=".partial-", dir=path.parent))
    try:
        model.save(tmpdir / path.name)
        (tmpdir / path.name).replace(path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
