"""The ASDF extension of a JWST product: read its bytes, parse its tree, load its WCS.

stdatamodels writes the ASDF file (the datamodel's tree, with the arrays
pointing at FITS extensions) into a one-row ``ASDF`` binary table, last.  For
validation the tree is parsed as YAML with a tag-agnostic safe loader and its
binary blocks are walked (:func:`_parse_asdf_bytes`): no tag conversion, no
asdf import.  Only :func:`_load_wcs` (``jwstrun info --pixel/--sky``) opens it
with the asdf library, to get a gwcs object.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from ..errors import InputError

__all__ = ["clear_caches"]

_TREE_END = b"\n...\n"
_BLOCK_MAGIC = b"\xd3BLK"


@functools.lru_cache(maxsize=1)
def _asdf_yaml_loader():
    """A SafeLoader subclass building plain dicts/lists/strings for every ASDF tag.

    Built once on first use (it needs yaml); :func:`clear_caches` forgets it.
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _TagAgnosticLoader(base):  # type: ignore[misc, valid-type]
        """Builds plain dicts/lists for every ASDF tag: checks the tree without asdf."""

    def construct_any(loader, _suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _TagAgnosticLoader.add_multi_constructor("", construct_any)
    _TagAgnosticLoader.add_multi_constructor("!", construct_any)
    return _TagAgnosticLoader


def clear_caches() -> None:
    """Forget the YAML loader class (built again on next use)."""
    _asdf_yaml_loader.cache_clear()


def _parse_asdf_bytes(raw: bytes) -> dict:
    """Parse an embedded ASDF file's YAML tree and walk its binary blocks.

    Returns the tree with ``__blocks__`` set to the number of binary blocks.
    Raises ValueError with a reason when the bytes are not a complete ASDF file.
    """
    import yaml

    if not raw.startswith(b"#ASDF "):
        raise ValueError("does not start with '#ASDF'")
    end = raw.find(_TREE_END)
    if end < 0:
        raise ValueError("its YAML tree has no end marker ('...'): the write was cut short")
    stop = end + len(_TREE_END)
    loader = _asdf_yaml_loader()
    try:
        tree = yaml.load(raw[:stop], Loader=loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"its YAML tree does not parse ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ValueError("its YAML tree is not a mapping")
    tree["__blocks__"] = _count_blocks(raw, stop)
    return tree


def _count_blocks(raw: bytes, pos: int) -> int:
    """Walk the binary blocks that follow the tree; ValueError when one is cut short."""
    n_blocks = 0
    while pos < len(raw):
        if raw[pos : pos + 4] == _BLOCK_MAGIC:
            if pos + 6 > len(raw):
                raise ValueError(f"binary block {n_blocks} is cut short")
            header_size = int.from_bytes(raw[pos + 4 : pos + 6], "big")
            header = raw[pos + 6 : pos + 6 + header_size]
            if len(header) < 16:
                raise ValueError(f"binary block {n_blocks} header is cut short")
            allocated = int.from_bytes(header[8:16], "big")
            pos += 6 + header_size + allocated
            if pos > len(raw):
                raise ValueError(f"binary block {n_blocks} is cut short")
            n_blocks += 1
        elif raw[pos:].startswith(b"#ASDF BLOCK INDEX"):
            break
        elif raw[pos : pos + 1] in (b"\x00", b" ", b"\n", b"\r"):
            pos += 1  # padding between tree and blocks
        else:
            raise ValueError(f"unexpected bytes after block {n_blocks}")
    return n_blocks


def _read_asdf_hdu(hdu) -> bytes:
    """The embedded ASDF file's bytes from the ``ASDF`` table HDU."""
    data = hdu.data
    return bytes(data["ASDF_METADATA"][0].tobytes())


def _load_wcs(path: Path):
    """The gwcs object stored in a product's ASDF extension (imports asdf: slow)."""
    import io

    import asdf
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        if "ASDF" not in hdul:
            raise InputError(f"{path}: has no ASDF extension, so no WCS to evaluate.")
        raw = _read_asdf_hdu(hdul["ASDF"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old tag versions in archival files
        # lazy_tree: only meta.wcs is converted; the arrays the tree keeps in FITS
        # extensions ("source: fits:SCI,1") are never resolved.
        with asdf.open(io.BytesIO(raw), lazy_load=False, lazy_tree=True, memmap=False) as af:
            wcs = (af.tree.get("meta") or {}).get("wcs")
    if wcs is None:
        raise InputError(
            f"{path}: has no WCS (meta.wcs) in its ASDF extension; run assign_wcs first "
            "(S_WCS must be COMPLETE)."
        )
    return wcs
