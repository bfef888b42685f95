"""``jwstrun diff``: what differs between two runs (two OUTDIRs with their manifests).

Products are paired by file name (the outputs their manifests record); each pair is
compared by :func:`jwstrun.compare._products.compare_product`.  From the manifests,
task by task: the versions, the CRDS context, the reference files and the resolved
parameters that differ (paths inside each OUTDIR are written ``OUTDIR/...`` first,
so a run and its copy elsewhere agree).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..manifest import MANIFEST_NAME, read_manifest
from ._products import compare_product

__all__ = ["RunDiff", "DiffInputError", "diff_runs"]


class DiffInputError(InputError):
    """A path given to :func:`diff_runs` is not a jwstrun OUTDIR (exit code 2, as diff(1))."""

    exit_code = 2


@dataclass
class RunDiff:
    """What :func:`diff_runs` found.  ``products``: one entry per pair that differs
    (all pairs with ``all_products``); ``settings``: one entry per manifest fact that
    differs (``task``, ``kind`` -- version, crds_context, reference, parameter --,
    ``name``, ``a``, ``b``)."""

    run_a: str
    run_b: str
    tolerance: float
    n_compared: int = 0
    products: list[dict] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    tasks_only_in_a: list[str] = field(default_factory=list)
    tasks_only_in_b: list[str] = field(default_factory=list)
    settings: list[dict] = field(default_factory=list)

    @property
    def changed_products(self) -> list[dict]:
        return [p for p in self.products if p["differs"]]

    @property
    def identical(self) -> bool:
        return not (self.changed_products or self.only_in_a or self.only_in_b
                    or self.tasks_only_in_a or self.tasks_only_in_b or self.settings)

    def to_dict(self) -> dict:
        return {"identical": self.identical, **asdict(self)}


def _run_dir(path: str | os.PathLike) -> Path:
    """The OUTDIR of ``path`` (or :class:`DiffInputError` saying what it is not)."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST_NAME:
        path = path.parent
    if not path.is_dir():
        raise DiffInputError(f"{path}: no such directory. Give the -o directory of a jwstrun "
                             "run (image2, image3, step or demo).")
    if not (path / MANIFEST_NAME).is_file():
        raise DiffInputError(f"{path}: not a jwstrun output directory (no {MANIFEST_NAME}). "
                             "Give the -o directory of a jwstrun run (image2, image3, step "
                             "or demo).")
    return path


def _read(run: Path):
    try:
        return read_manifest(run)
    except InputError as exc:
        raise DiffInputError(str(exc)) from exc


def _products(contents) -> dict[str, str]:
    """Product name -> the task that wrote it (the tasks that finished)."""
    return {name: task_id for task_id, record in contents.tasks.items()
            if record.status == "ok" for name in record.outputs}


def diff_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, tolerance: float = 0.0,
              all_products: bool = False) -> RunDiff:
    """Compare the products and manifests of two runs (their OUTDIRs, or manifests).

    ``tolerance`` is relative: pixels differing by more than ``tolerance`` times the
    larger of the two values count (0: exact).  :class:`DiffInputError` (exit code 2)
    when either path is not a jwstrun OUTDIR or its manifest cannot be read.
    """
    if tolerance < 0:
        raise DiffInputError(f"--tolerance {tolerance}: must be 0 or more (relative).")
    dir_a, dir_b = _run_dir(run_a), _run_dir(run_b)
    man_a, man_b = _read(dir_a), _read(dir_b)
    result = RunDiff(run_a=str(dir_a), run_b=str(dir_b), tolerance=tolerance)
    prod_a, prod_b = _products(man_a), _products(man_b)
    result.only_in_a = sorted(set(prod_a) - set(prod_b))
    result.only_in_b = sorted(set(prod_b) - set(prod_a))
    for name in sorted(set(prod_a) & set(prod_b)):
        path_a, path_b = dir_a / name, dir_b / name
        missing = [str(p) for p in (path_a, path_b) if not p.is_file()]
        if missing:
            entry = {"name": name, "differs": True, "task": prod_a[name],
                     "missing": missing}
        else:
            entry = {**compare_product(path_a, path_b, tolerance), "task": prod_a[name]}
        result.n_compared += 1
        if entry["differs"] or all_products:
            result.products.append(entry)
    tasks_a, tasks_b = man_a.tasks, man_b.tasks
    result.tasks_only_in_a = sorted(set(tasks_a) - set(tasks_b))
    result.tasks_only_in_b = sorted(set(tasks_b) - set(tasks_a))
    for task_id in sorted(set(tasks_a) & set(tasks_b)):
        result.settings.extend(_record_differences(task_id, tasks_a[task_id], dir_a,
                                                   tasks_b[task_id], dir_b))
    return result


def _record_differences(task_id: str, rec_a, dir_a: Path, rec_b, dir_b: Path) -> list[dict]:
    """The versions, CRDS context, references and resolved parameters of one task that
    differ between the two records."""
    rows = []

    def add(kind, name, a, b):
        if a != b:
            rows.append({"task": task_id, "kind": kind, "name": name, "a": a, "b": b})

    for name in sorted(set(rec_a.versions) | set(rec_b.versions)):
        add("version", name, rec_a.versions.get(name), rec_b.versions.get(name))
    add("crds_context", "CRDS context", rec_a.crds_context, rec_b.crds_context)
    refs_a, refs_b = _references(rec_a), _references(rec_b)
    for name in sorted(set(refs_a) | set(refs_b)):
        add("reference", name, refs_a.get(name), refs_b.get(name))
    params_a = _flatten(_relative(rec_a.resolved_parameters or rec_a.parameters, dir_a))
    params_b = _flatten(_relative(rec_b.resolved_parameters or rec_b.parameters, dir_b))
    for name in sorted((set(params_a) | set(params_b)) - _NOT_COMPARED):
        add("parameter", name, params_a.get(name), params_b.get(name))
    return rows


#: Parameters jwstrun sets per task itself (the pipeline writes into the task's
#: temporary directory): they differ between any two OUTDIRs.
_NOT_COMPARED = {"output_dir"}


def _references(record) -> dict[str, str]:
    """Reference keyword -> file, over the task's products (R_FLAT -> crds://...)."""
    refs: dict[str, str] = {}
    for keywords in (record.references or {}).values():
        for key, value in keywords.items():
            refs.setdefault(key, value)
    return refs


def _relative(value, run: Path):
    """``value`` with the run directory in its strings written OUTDIR."""
    prefixes = sorted({str(run), str(run.resolve())}, key=len, reverse=True)
    if isinstance(value, dict):
        return {k: _relative(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, run) for v in value]
    if isinstance(value, str):
        for prefix in prefixes:
            if value == prefix or value.startswith(prefix + os.sep):
                return "OUTDIR" + value[len(prefix):]
    return value


def _flatten(params, prefix: str = "") -> dict:
    """Nested parameters as ``{"steps.resample.pixfrac": 0.5, ...}`` (stpipe's spelling)."""
    flat = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
