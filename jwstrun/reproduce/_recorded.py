"""What a manifest recorded, as the runner calls that redo it, and what differs now.

:func:`read_recorded` turns the task records of an OUTDIR into :class:`Call` objects
(one ``run_image2`` / ``run_image3`` / ``run_step`` call per stage and set of
parameters, in the order the run made them) and lists every :class:`Difference`
between the recorded run and this machine: an input missing or changed (sha256), a
different jwst (or step package) installed, a CRDS context not in the cache, what the
manifest does not pin.  Inputs that an earlier task of the run wrote are not checked:
reproducing redoes them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..manifest import MANIFEST_NAME, read_manifest

__all__ = ["Call", "Difference", "Recorded", "ReproduceError", "read_recorded"]

log = logging.getLogger(__name__)

#: stpipe's own parameters of every step, set per run (not part of what a step computes)
RUNTIME_PARAMETERS = ("pre_hooks", "post_hooks", "output_file", "output_dir", "output_ext",
                      "output_use_model", "output_use_index", "save_results", "skip", "suffix",
                      "search_output_file", "input_dir")
#: the record statuses of tasks that wrote their products
_DONE = ("ok", "skipped")


class ReproduceError(InputError):
    """A recorded run cannot be reproduced as it was (the message says what differs)."""


@dataclass
class Difference:
    """One thing that keeps a reproduction from being exact: ``kind`` (input-missing,
    input-changed, version, crds-context, not-recorded), the ``message`` the CLI prints,
    and the task ids it concerns."""

    kind: str
    message: str
    label: str
    tasks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Call:
    """One runner call that redoes some recorded tasks: ``stage`` (image2, image3 or a
    step's name), the ``inputs`` to give it (``OUTDIR/...`` for files an earlier task
    wrote, ``ASN:name`` for an association of the old OUTDIR that is copied into the new
    one), the recorded call ``parameters`` and ``corrections`` (``before:`` steps) and the
    workers' extra ``environment``."""

    stage: str
    task_ids: list[str]
    inputs: list[str]
    parameters: dict
    corrections: list[dict]
    environment: dict
    context: str | None
    start: float = 0.0
    #: association files of the old OUTDIR this call reads
    associations: list[str] = field(default_factory=list)
    #: the resolved parameters of the call's first task, as stpipe logged them
    resolved: dict | None = None
    pipeline_class: str | None = None
    #: inputs paired by jwstrun as dedicated backgrounds (loose files given to image2)
    backgrounds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Recorded:
    """A recorded run: its OUTDIR, the calls that redo it, the differences found, the
    CRDS settings its workers used and the tasks left out (failed)."""

    source: Path
    calls: list[Call]
    differences: list[Difference]
    crds: dict
    left_out: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    #: names of the products the reproduced tasks write
    produced: set = field(default_factory=set)
    #: recorded CRDS contexts the cache lacks (--go-on: the cache's own context is used)
    uncached: set = field(default_factory=set)

    def to_dict(self) -> dict:
        return {"source": str(self.source), "calls": [c.to_dict() for c in self.calls],
                "differences": [d.to_dict() for d in self.differences], "crds": self.crds,
                "left_out": self.left_out, "versions": self.versions}

    def refusal(self) -> str:
        """The one Error line naming the first difference (and counting the others)."""
        first, rest = self.differences[0], self.differences[1:]
        if not rest:
            return first.message
        return (f"{first.message} ({len(rest)} more difference(s): "
                + "; ".join(d.label for d in rest) + ")")


def source_dir(path) -> Path:
    """The OUTDIR of an OUTDIR or manifest argument (:class:`InputError` if it is neither)."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST_NAME:
        path = path.parent
    if not (path / MANIFEST_NAME).is_file():
        what = "no such directory" if not path.exists() else f"no {MANIFEST_NAME} in it"
        raise InputError(f"{path}: {what}. Give the -o directory of a jwstrun run (image2, "
                         f"image3, step or demo) or its {MANIFEST_NAME}.")
    return path


def read_recorded(source, crds_path: str | None = None) -> Recorded:
    """The calls that redo the run of ``source`` and what differs from it here.

    ``crds_path``: the cache to check the contexts against (default: the one the run
    recorded, else CRDS_PATH of the environment)."""
    outdir = source_dir(source)
    contents = read_manifest(outdir)
    if contents.problems:
        raise InputError(f"{contents.path}: not a complete manifest ({contents.problems[0]}); "
                         "it cannot be reproduced.")
    runs = list(contents.runs)
    crds = next((dict(r["crds"]) for r in reversed(runs) if isinstance(r.get("crds"), dict)
                 and r["crds"]), {})
    if crds_path:
        crds["CRDS_PATH"] = str(Path(crds_path).expanduser().resolve())
    elif "CRDS_PATH" not in crds and os.environ.get("CRDS_PATH"):
        crds["CRDS_PATH"] = os.environ["CRDS_PATH"]
    records = sorted(contents.tasks.values(), key=lambda r: (r.start or r.end or 0.0, r.task_id))
    done = [r for r in records if r.status in _DONE]
    left_out = [f"{r.task_id} ({r.status})" for r in records if r.status not in _DONE]
    produced = {name for r in done for name in r.outputs}
    recorded = Recorded(source=outdir, calls=[], differences=[], crds=crds, left_out=left_out,
                        produced=produced)
    _check_inputs(recorded, outdir, done, produced)
    _check_versions(recorded, done)
    _check_contexts(recorded, done)
    recorded.calls = _calls(outdir, done, produced, runs, recorded)
    return recorded


def _in_outdir(path: str, outdir: Path) -> bool:
    parent = Path(path).parent
    return parent == outdir or parent.resolve() == outdir.resolve()


def _check_inputs(recorded: Recorded, outdir: Path, records, produced: set) -> None:
    from ..runner import file_sha256

    seen: dict[str, Difference] = {}
    for record in records:
        for entry in record.inputs:
            path, name = entry["path"], entry["name"]
            if name in produced and _in_outdir(path, outdir):
                continue  # written by an earlier task of the run: redone
            if path in seen:
                seen[path].tasks.append(record.task_id)
                continue
            if not Path(path).is_file():
                seen[path] = Difference(
                    "input-missing", f"{path}: missing (task {record.task_id} read it). Restore "
                    "it, or pass --go-on to reproduce the other tasks without it.",
                    f"{name} missing", [record.task_id])
                continue
            digest = file_sha256(path)
            if entry.get("sha256") and digest != entry["sha256"]:
                seen[path] = Difference(
                    "input-changed", f"{path}: changed since the run (sha256 {digest[:12]}... "
                    f"instead of the recorded {entry['sha256'][:12]}...). Restore the file the "
                    "run read, or pass --go-on to reproduce with it as it is now.",
                    f"{name} changed", [record.task_id])
    recorded.differences.extend(seen.values())


def _check_versions(recorded: Recorded, records) -> None:
    from ..runner import software_versions

    found: dict[tuple, Difference] = {}
    for record in records:
        extra = tuple(k for k in record.versions
                      if k not in ("jwst", "stpipe", "crds", "stdatamodels", "stcal", "jwstrun"))
        installed = software_versions(extra)
        recorded.versions.update(installed)
        for name, version in record.versions.items():
            now = installed.get(name)
            if now == version:
                continue
            if name == "jwstrun":  # it does not change what jwst computes (resume agrees)
                log.info("the run used jwstrun %s; this is jwstrun %s.", version, now)
                continue
            key = (name, version, now)
            if key in found:
                found[key].tasks.append(record.task_id)
                continue
            found[key] = Difference(
                "version", f"{name} {now} is installed but the run used {name} {version}. "
                f"Install it (pip install '{name}=={version}') or pass --go-on to reproduce "
                f"with {name} {now}.", f"{name} {version} -> {now}", [record.task_id])
    recorded.differences.extend(found.values())


def _check_contexts(recorded: Recorded, records) -> None:
    cache = recorded.crds.get("CRDS_PATH")
    contexts: dict[str, list[str]] = {}
    for record in records:
        if record.crds_context:
            contexts.setdefault(record.crds_context, []).append(record.task_id)
    for context, tasks in contexts.items():
        if cache and (Path(cache) / "mappings" / "jwst" / context).is_file():
            continue
        where = f"the local cache {cache}" if cache else "a local cache (CRDS_PATH is not set)"
        recorded.uncached.add(context)
        recorded.differences.append(Difference(
            "crds-context", f"CRDS context {context} is not in {where}. Fetch it (jwstrun refs "
            f"prefetch INPUTS --context {context}), give a cache that has it (--crds-path DIR), "
            "or pass --go-on to use the cache's own context.", f"context {context} not cached",
            tasks))


def _environment(runs: list[dict], stage: str) -> dict | None:
    """The workers' extra environment of the last run of ``stage`` (None: not recorded)."""
    for run in reversed(runs):
        if run.get("stage") == stage and isinstance(run.get("environment"), dict):
            return dict(run["environment"])
    return None


def _calls(outdir: Path, records, produced: set, runs: list[dict],
           recorded: Recorded) -> list[Call]:
    calls: dict[str, Call] = {}
    unpinned: dict[str, list[str]] = {}
    missing = {t for d in recorded.differences if d.kind == "input-missing" for t in d.tasks}
    for record in records:
        env = _environment(runs, record.pipeline)
        if env is None:
            unpinned.setdefault(record.pipeline, []).append(record.task_id)
            env = {}
        if record.task_id in missing:  # --go-on: the other tasks only
            continue
        key = json.dumps([record.pipeline, record.parameters, _correction_key(record), env,
                          record.crds_context], sort_keys=True, default=str)
        call = calls.get(key)
        if call is None:
            call = calls[key] = Call(
                stage=record.pipeline, task_ids=[], inputs=[], parameters=record.parameters,
                corrections=list(record.corrections), environment=env,
                context=record.crds_context, start=record.start or record.end or 0.0,
                resolved=record.resolved_parameters, pipeline_class=record.pipeline_class)
        call.task_ids.append(record.task_id)
        call.backgrounds += [e["path"] for e in record.inputs if e.get("role") == "background"
                             and not record.inputs[0].get("role") == "association"]
        for given in _given(record):
            if _in_outdir(given, outdir) and Path(given).name.endswith("_asn.json"):
                call.associations.append(str(given))
                given = "OUTDIR/" + Path(given).name
            elif Path(given).name in produced and _in_outdir(given, outdir):
                given = "OUTDIR/" + Path(given).name
            if given not in call.inputs:
                call.inputs.append(given)
    for stage, tasks in unpinned.items():
        recorded.differences.append(Difference(
            "not-recorded", f"{outdir / MANIFEST_NAME}: does not record whether the {stage} run "
            "used CRDS parameter references (--no-crds-steppars): it was written by a jwstrun "
            "without reproduce. Pass --go-on to reproduce with them used.",
            f"{stage}: --no-crds-steppars not recorded", tasks))
    return sorted(calls.values(), key=lambda c: c.start)


def _given(record) -> list[str]:
    """What the task was given: its association, else every file it read (a set step's
    exposures, an exposure with the dedicated backgrounds jwstrun paired with it)."""
    entries = record.inputs or [{"path": record.input, "role": "science"}]
    if entries[0].get("role") == "association":
        return [record.input or entries[0]["path"]]
    return [e["path"] for e in entries]


def _correction_key(record) -> list:
    """What of the corrections decides the products (not their per-task output_dir)."""
    return [[c.get("step"), {k: v for k, v in (c.get("parameters") or {}).items()
                             if k not in RUNTIME_PARAMETERS}] for c in record.corrections]
