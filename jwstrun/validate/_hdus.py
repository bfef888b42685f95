"""FITS helpers for validation: HDU layout from headers, and data scans that stop early.

Dtypes and shapes come from the headers (BITPIX/BZERO, NAXISn, TFORMn) so no
array is read to check a layout; the data scans read ~4 MB chunks and stop at
the first one with signal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHUNK_PIXELS = 1 << 20  # data checks scan ~4 MB at a time and stop early

_INT_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64"}
_UNSIGNED = {16: "uint16", 32: "uint32", 64: "uint64"}
_TFORM = {"J": "int32", "K": "int64", "I": "int16", "E": "float32", "D": "float64", "B": "uint8"}


def _header_dtype(header) -> str:
    """numpy dtype name of an image HDU from BITPIX/BZERO, without reading data."""
    bitpix = header.get("BITPIX")
    bzero = header.get("BZERO", 0) or 0
    bscale = header.get("BSCALE", 1)
    if bscale not in (None, 1, 1.0):
        return f"scaled(BITPIX={bitpix}, BSCALE={bscale})"
    if bitpix == -32:
        return "float32"
    if bitpix == -64:
        return "float64"
    if bitpix in _UNSIGNED and bzero == 2 ** (bitpix - 1):
        return _UNSIGNED[bitpix]
    if bitpix == 8 and bzero == -128:
        return "int8"
    return _INT_BITPIX.get(bitpix, f"BITPIX={bitpix}")


def _header_shape(header) -> tuple[int, ...]:
    naxis = int(header.get("NAXIS", 0) or 0)
    return tuple(int(header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))


def _table_columns(header) -> dict[str, str]:
    columns = {}
    for i in range(1, int(header.get("TFIELDS", 0) or 0) + 1):
        name = str(header.get(f"TTYPE{i}", "")).strip()
        form = str(header.get(f"TFORM{i}", "")).strip()
        code = re.sub(r"^\d*", "", form)[:1]
        dtype = _TFORM.get(code, form)
        if code in ("J", "I", "K") and header.get(f"TZERO{i}") not in (None, 0):
            dtype = "u" + dtype  # unsigned stored with TZERO offset
        columns[name] = dtype
    return columns


def _norm_unit(text) -> str:
    return re.sub(r"\s+", "", str(text or "")).lower()


@dataclass
class _Hdu:
    index: int
    name: str
    kind: str
    header: object
    shape: tuple
    dtype: str
    end: int  # byte offset just past this HDU's data (padded)
    hdu: object


def _scan_hdus(hdul) -> list[_Hdu]:
    out = []
    for index, hdu in enumerate(hdul):
        header = hdu.header
        info = hdu.fileinfo() or {}
        end = int(info.get("datLoc", 0)) + int(info.get("datSpan", 0))
        kind = "table" if header.get("XTENSION", "").strip() == "BINTABLE" else "image"
        name = str(header.get("EXTNAME", "PRIMARY" if index == 0 else "")).strip().upper()
        out.append(
            _Hdu(
                index=index,
                name=name,
                kind=kind,
                header=header,
                shape=_header_shape(header),
                dtype=_header_dtype(header) if kind == "image" else "table",
                end=end,
                hdu=hdu,
            )
        )
    return out


def _raw_zero(h: _Hdu) -> float:
    """The raw stored value that means 0 for data read without BZERO scaling."""
    bzero = h.header.get("BZERO", 0) or 0
    bscale = h.header.get("BSCALE", 1) or 1
    return -bzero / bscale


def _data_has_signal(data, zero: float = 0) -> tuple[bool, bool]:
    """(has a finite non-zero value, is entirely NaN); stops at the first good chunk.

    ``zero`` is the raw value meaning 0 when integer data was read unscaled.
    """
    import numpy as np

    if data is None or data.size == 0:
        return False, False
    rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, _CHUNK_PIXELS // max(1, rows.shape[1]))
    all_nan = True
    for start in range(0, rows.shape[0], step):
        chunk = np.asarray(rows[start : start + step])
        if chunk.dtype.kind == "f":
            finite = np.isfinite(chunk)
            if np.any(finite & (chunk != 0)):
                return True, False
            if all_nan and np.any(~np.isnan(chunk)):
                all_nan = False
        else:
            all_nan = False
            if np.any(chunk != zero):
                return True, False
    return False, all_nan


def _count_flag(data, flag: int) -> int:
    """Pixels with ``flag`` set.  Works on raw uint32 data stored with BZERO = 2**31:
    that offset only flips bit 31, so the lower flag bits read the same."""
    import numpy as np

    rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, _CHUNK_PIXELS // max(1, rows.shape[1]))
    total = 0
    for start in range(0, rows.shape[0], step):
        total += int(np.count_nonzero(np.asarray(rows[start : start + step]) & flag))
    return total
