"""Put every mapping and reference some inputs need into the CRDS cache, so runs
need no network afterwards.

Downloads go through crds' own FileCacher (atomic per-file writes with its
per-file lock and checksum verification); when the cache lacks something and
no server or mirror answers, the error names the files, their reftype and the
input, and says where to run the prefetch instead.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CrdsError
from . import _crds
from .bestrefs import Resolution, resolve_bestrefs
from .env import OBSERVATORY, env_value, is_serverless, redact_url, server_reachable
from .setup import offline_advice

__all__ = ["FetchedFile", "PrefetchReport", "prefetch"]

log = logging.getLogger(__name__)


@dataclass
class FetchedFile:
    name: str
    kind: str  # "reference" or "mapping"
    status: str  # "fetched" or "present"
    bytes: int
    reftypes: list[str] = field(default_factory=list)


@dataclass
class PrefetchReport:
    """What :func:`prefetch` found in and added to the cache."""

    context: str
    crds_path: str
    files: list[FetchedFile]
    resolution: Resolution
    source: str
    #: with ``per_exposure=True``: exposures crds cannot serve -> why (nothing fetched for them)
    unresolved: dict[str, str] = field(default_factory=dict)

    def _count(self, status: str, kind: str | None = None) -> tuple[int, int]:
        chosen = [f for f in self.files if f.status == status and (kind is None or f.kind == kind)]
        return len(chosen), sum(f.bytes for f in chosen)

    @property
    def fetched(self) -> tuple[int, int]:
        """(files, bytes) downloaded now."""
        return self._count("fetched")

    @property
    def present(self) -> tuple[int, int]:
        """(files, bytes) already in the cache."""
        return self._count("present")

    def run_environment(self) -> dict[str, str]:
        """CRDS_PATH and CRDS_CONTEXT of this prefetch: what later runs use and pin
        (``jwstrun refs prefetch --write-env FILE``, then ``--crds-env FILE``)."""
        return {"CRDS_PATH": self.crds_path, "CRDS_CONTEXT": self.context}

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "crds_path": self.crds_path,
            "source": self.source,
            "fetched": {"files": self.fetched[0], "bytes": self.fetched[1]},
            "present": {"files": self.present[0], "bytes": self.present[1]},
            "files": [asdict(f) for f in self.files],
            "problems": self.resolution.problems,
            "resolution": self.resolution.to_dict(),
        }


@dataclass(frozen=True)
class _Source:
    """Where crds can download from now, and what to do when it cannot."""

    can_download: bool
    name: str
    advice: str


def _download_source(purpose: str) -> _Source:
    mirror = env_value("CRDS_REFERENCE_URI") or env_value("CRDS_MAPPING_URI")
    if mirror:
        return _Source(True, f"mirror {redact_url(mirror)}", offline_advice(purpose))
    url = os.environ.get("CRDS_SERVER_URL")
    reachable, detail = server_reachable(url)
    name = (redact_url(url) or "no server") + ("" if reachable else f" ({detail})")
    return _Source(reachable, name, offline_advice(purpose, serverless=not url or
                                                   is_serverless(url)))


# ---------------------------------------------------------------------------
# The steps of a prefetch


def _fetch_mapping(name: str, path: Path, ctx: str, source: _Source) -> None:
    if not source.can_download:
        raise CrdsError(
            f"{path}: mapping {name} of context {ctx} is not in the CRDS cache and the "
            f"CRDS server cannot be reached ({source.name}). To fix: {source.advice}."
        )
    try:
        _crds.download_mappings(ctx, [name])
    except Exception as exc:  # noqa: BLE001 - crds download errors
        raise CrdsError(f"could not download mapping {name} from {source.name}: {exc}. "
                        f"To fix: {source.advice}.") from exc
    if not path.exists():
        raise CrdsError(f"{path}: mapping {name} was not written by the download "
                        "(is CRDS_READONLY_CACHE set?). Unset CRDS_READONLY_CACHE for the "
                        "prefetch and check that CRDS_PATH is writable.")


def _fetch_mappings(ctx: str, source: _Source) -> list[FetchedFile]:
    """The context's mappings: walk pmap -> imaps -> rmaps, fetching what is missing.

    (crds' dump_mappings asks the server for the closure; walking the files also
    works with a mirror given by CRDS_MAPPING_URI.)
    """
    status: dict[str, str] = {}
    queue = [ctx]
    while queue:
        name = queue.pop()
        if name in status:
            continue
        path = _crds.locate_mapping(name)
        if path.exists():
            status[name] = "present"
        else:
            _fetch_mapping(name, path, ctx, source)
            status[name] = "fetched"
        if not name.endswith(".rmap"):
            text = path.read_text()
            body = text[text.find("selector"):]
            queue.extend(re.findall(r"['\"](jwst_[a-z0-9_\-]+\.[ir]map)['\"]", body))
    _crds.load_context(ctx)  # the whole closure is present and checksums are right
    return [FetchedFile(name, "mapping", state, _crds.locate_mapping(name).stat().st_size)
            for name, state in sorted(status.items())]


def _ensure_server_config(crds_path: str) -> None:
    """server_config: without it crds refuses to run offline later."""
    cfg = Path(crds_path) / "config" / OBSERVATORY / "server_config"
    if not cfg.is_file():
        _crds.write_server_config()
        if not cfg.is_file():
            raise CrdsError(f"{cfg}: could not write the CRDS configuration; check that CRDS_PATH "
                            "is writable.")


def _wanted_references(resolution: Resolution) -> dict[str, dict]:
    """{reference name: instrument, reftypes, first exposure, path in the cache}."""
    wanted: dict[str, dict] = {}
    for group in resolution.groups:
        for reftype, name in group.references.items():
            if name == "N/A" or group.errors:
                continue
            entry = wanted.setdefault(name, {"instrument": group.instrument, "reftypes": set(),
                                             "exposure": group.exposures[0]})
            entry["reftypes"].add(reftype)
    for name, entry in wanted.items():
        entry["path"] = _crds.locate_reference(name, entry["instrument"])
    return wanted


def _fetch_references(ctx: str, crds_path: str, wanted: dict[str, dict],
                      source: _Source) -> set[str]:
    """Download the references missing from the cache; their names."""
    missing: dict[str, list[str]] = {}
    for name, entry in sorted(wanted.items()):
        if not entry["path"].exists():
            missing.setdefault(entry["instrument"], []).append(name)
    n_missing = sum(len(v) for v in missing.values())
    if n_missing and _crds.cache_readonly():
        raise CrdsError(f"{n_missing} reference files are missing from {crds_path} but "
                        "CRDS_READONLY_CACHE is set; unset it for the prefetch.")
    if n_missing and not source.can_download:
        lines = [f"{name} ({', '.join(sorted(wanted[name]['reftypes']))}; needed by "
                 f"{wanted[name]['exposure']})" for names in missing.values() for name in names]
        raise CrdsError(
            f"{n_missing} reference file(s) are not in the CRDS cache {crds_path} and the CRDS "
            f"server cannot be reached ({source.name}):\n  " + "\n  ".join(lines)
            + f"\nTo fix: {source.advice}."
        )
    fetched: set[str] = set()
    for instrument, names in missing.items():
        log.info("fetching %d %s reference files from %s", len(names), instrument, source.name)
        try:
            _crds.download_references(ctx, names, instrument)
        except Exception as exc:  # noqa: BLE001 - crds download errors
            raise CrdsError(f"downloading {instrument} references from {source.name} failed: "
                            f"{exc}. Re-run `jwstrun refs prefetch` (finished files are "
                            "kept) or " + source.advice + ".") from exc
        fetched.update(names)
    return fetched


def _reference_files(wanted: dict[str, dict], fetched: set[str]) -> list[FetchedFile]:
    files = []
    for name, entry in sorted(wanted.items()):
        path = entry["path"]
        if not path.exists():
            raise CrdsError(f"{name}: still missing from {path} after the download; another "
                            "process may be fetching it. Re-run `jwstrun refs prefetch`.")
        files.append(FetchedFile(name, "reference", "fetched" if name in fetched else "present",
                                 path.stat().st_size, sorted(entry["reftypes"])))
    return files


def prefetch(inputs, context: str | None = None, pipelines=("image2", "image3"),
             steps: dict | None = None, per_exposure: bool = False,
             purpose: str = "fetch") -> PrefetchReport:
    """Put every mapping and reference ``inputs`` need for ``pipelines`` into CRDS_PATH.

    Uses crds' own downloader (``crds.client.api``: atomic per-file writes with
    its per-file lock and checksum verification).  Step-parameter (``pars-*``)
    references are included.  Afterwards the same inputs run with the network
    gone (pin the returned context, see :func:`worker_environment`).

    Raises :class:`CrdsError` naming the missing files, their reftype and the
    input when the cache lacks something and no server or mirror can be reached,
    and when crds has no reference for an input -- unless ``per_exposure``: then
    such inputs are left out and listed in ``report.unresolved`` (a run fails
    only their tasks).  ``purpose`` picks the advice of the errors: "fetch" (the
    ``refs prefetch`` command: reach the server) or "run" (a pipeline run: prefetch
    first, or use a filled cache).
    """
    ctx = _crds.context_in_use(context, purpose=purpose)
    crds_path = _crds.crds_path()
    source = _download_source(purpose)
    if _crds.cache_readonly():
        log.info("CRDS_READONLY_CACHE is set: prefetch will only check the cache")
    files = _fetch_mappings(ctx, source)
    _ensure_server_config(crds_path)
    resolution = resolve_bestrefs(inputs, context=ctx, pipelines=pipelines if pipelines else None,
                                  steps=steps)
    if resolution.problems and not per_exposure:
        raise CrdsError("CRDS cannot resolve every reference the pipelines need:\n  "
                        + "\n  ".join(resolution.problems)
                        + f"\nPin another context with --crds-context or fix the rules in {crds_path}.")
    wanted = _wanted_references(resolution)
    fetched = _fetch_references(ctx, crds_path, wanted, source)
    files += _reference_files(wanted, fetched)
    return PrefetchReport(context=ctx, crds_path=crds_path, files=files, resolution=resolution,
                          source=source.name, unresolved=resolution.unresolved())
