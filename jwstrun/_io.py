"""The one atomic write: readers see the old file or the whole new one, never a part.

A temporary file in the destination's own directory (so the rename never
crosses a filesystem), written, fsynced, given mode 0644 (mkstemp makes it
private; products, manifests and reports are for the whole team), then
``os.replace``d over the destination.  On any error, the temporary file is
removed and the destination is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["atomic_write"]

Content = Union[str, bytes, Callable[[Path], None]]


def atomic_write(path: str | os.PathLike, content: Content, *, mode: int = 0o644,
                 fsync: bool = True) -> Path:
    """Write ``content`` to ``path`` atomically and return the path.

    ``content`` is text (written as UTF-8), bytes, or a callable that writes the
    file whose path it is given (for writers that want a file name, such as a
    PNG encoder or ``asdf``).  ``fsync=False`` skips the flush to disk, for
    caches whose loss only costs time.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
            if fsync:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
        else:
            data = content.encode() if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
