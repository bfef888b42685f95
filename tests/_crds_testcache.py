"""A tiny but genuine CRDS cache for the refs tests (laid out as the server writes it).

Until ``jwstrun.simulate`` writes a complete cache, tests need mappings the
stock crds client loads: a ``.pmap``, one ``.imap`` per instrument and one
``.rmap`` per reference type, each with a correct ``sha1sum`` (SHA-1 of the
text without the lines containing "sha1sum"), plus ``server_config`` and the
reference files themselves.  Reference files are small placeholders: bestrefs
and prefetch only need names, sizes and checksums, never their content.
"""

from __future__ import annotations

import hashlib
import pprint
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "IMAGE2_TYPES",
    "IMAGE3_TYPES",
    "Rmap",
    "write_context",
    "write_server_config",
    "write_remote_config",
]

#: reftypes calwebb_image2 prefetches (every unskipped step) and image3's source_catalog
IMAGE2_TYPES = (
    "bkg wavelengthrange distortion filteroffset specwcs regions camera chromcorr collimator "
    "disperser fore fpa msa ote ifupost ifufore ifuslicer flat fflat sflat dflat photom area"
).split()
IMAGE3_TYPES = ["apcorr", "abvegaoffset"]


@dataclass
class Rmap:
    """Selection rules for one reftype: match keys and {match values: {useafter: file}}."""

    match_keys: tuple[str, ...]
    rules: dict[tuple, dict[str, str]] = field(default_factory=dict)
    date_keys: tuple[str, ...] = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")


def _with_checksum(text: str) -> str:
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    return text.replace("@SHA1SUM@", hashlib.sha1(body.encode("utf-8")).hexdigest())


def _write_mapping(path: Path, header: dict, selector_text: str) -> None:
    header = dict(header, sha1sum="@SHA1SUM@")
    lines = ["header = {"]
    for key in sorted(header):
        lines.append(f"    {key!r} : {header[key]!r},")
    lines.append("}")
    text = "\n".join(lines) + "\n\nselector = " + selector_text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_with_checksum(text))


def _rmap_text(rmap: Rmap) -> str:
    lines = ["Match({"]
    for values, useafters in sorted(rmap.rules.items()):
        lines.append(f"    {tuple(values)!r} : UseAfter({{")
        for date, name in sorted(useafters.items()):
            lines.append(f"        {date!r} : {name!r},")
        lines.append("    }),")
    lines.append("})")
    return "\n".join(lines)


def write_context(
    root: Path,
    serial: int,
    instruments: dict[str, dict[str, Rmap | str]],
    reference_bytes: int = 2880,
) -> str:
    """Write ``jwst_<serial>.pmap`` and its imaps/rmaps/references under ``root``.

    ``instruments`` maps instrument -> {reftype: Rmap or 'N/A'}.  Mapping file
    names carry ``serial`` so several contexts can live in one cache.  Reference
    files already present (same name) are left alone.  Returns the pmap name.
    """
    root = Path(root)
    mapdir = root / "mappings" / "jwst"
    pmap_name = f"jwst_{serial:04d}.pmap"
    imaps = {}
    for instrument, reftypes in instruments.items():
        inst = instrument.lower()
        imap_name = f"jwst_{inst}_{serial:04d}.imap"
        selections = {}
        for reftype, rule in sorted(reftypes.items()):
            if isinstance(rule, str):
                selections[reftype.upper()] = rule
                continue
            rmap_name = f"jwst_{inst}_{reftype}_{serial:04d}.rmap"
            selections[reftype.upper()] = rmap_name
            _write_mapping(
                mapdir / rmap_name,
                {
                    "mapping": "REFERENCE",
                    "observatory": "JWST",
                    "instrument": instrument.upper(),
                    "filekind": reftype.upper(),
                    "name": rmap_name,
                    "derived_from": "jwstrun tests",
                    "classes": ("Match", "UseAfter"),
                    "parkey": (tuple(rule.match_keys), tuple(rule.date_keys)),
                    "sha1sum": None,
                },
                _rmap_text(rule),
            )
            refdir = root / "references" / "jwst" / inst
            refdir.mkdir(parents=True, exist_ok=True)
            for useafters in rule.rules.values():
                for name in useafters.values():
                    ref = refdir / name
                    if name.upper() != "N/A" and not ref.exists():
                        # distinct content per file so checksums differ
                        payload = (name.encode() * (reference_bytes // len(name) + 1))
                        ref.write_bytes(payload[:reference_bytes])
        _write_mapping(
            mapdir / imap_name,
            {
                "mapping": "INSTRUMENT",
                "observatory": "JWST",
                "instrument": instrument.upper(),
                "name": imap_name,
                "derived_from": "jwstrun tests",
                "parkey": ("REFTYPE",),
                "sha1sum": None,
            },
            pprint.pformat(selections),
        )
        imaps[instrument.upper()] = imap_name
    _write_mapping(
        mapdir / pmap_name,
        {
            "mapping": "PIPELINE",
            "observatory": "JWST",
            "name": pmap_name,
            "derived_from": "jwstrun tests",
            "parkey": ("META.INSTRUMENT.NAME",),
            "sha1sum": None,
        },
        pprint.pformat(imaps),
    )
    return pmap_name


def write_server_config(root: Path, operational_context: str, extra: dict | None = None) -> Path:
    """Write config/jwst/server_config (+ the instrument subdir mode tag) for offline use."""
    cfg = Path(root) / "config" / "jwst"
    cfg.mkdir(parents=True, exist_ok=True)
    info = {
        "observatory": "jwst",
        "operational_context": operational_context,
        "latest_context": operational_context,
        "edit_context": operational_context,
        "bad_files_list": [],
        "bad_files": "",
        "last_synced": "2025-01-01 00:00:00",
        "force_remote_mode": False,
        "mappings": sorted(p.name for p in (Path(root) / "mappings" / "jwst").glob("*map")),
    }
    info.update(extra or {})
    path = cfg / "server_config"
    path.write_text(pprint.pformat(info) + "\n")
    (cfg / "ref_cache_subdir_mode").write_text("instrument\n")
    return path


def write_remote_config(remote: Path, operational_context: str) -> Path:
    """Make the cache at ``remote`` usable as a download source (CRDS_CONFIG_URI et al.).

    crds' own downloader needs each file's size and sha1sum from the server
    info (``download_metadata``, crds-encoded) to verify what it fetched.
    """
    from crds.client import proxy

    remote = Path(remote)
    metadata = {}
    for path in list(remote.glob("mappings/jwst/*")) + list(remote.glob("references/jwst/*/*")):
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        metadata[path.name] = {"size": str(path.stat().st_size), "sha1sum": digest}
    return write_server_config(
        remote, operational_context, {"download_metadata": proxy.crds_encode(metadata)}
    )
