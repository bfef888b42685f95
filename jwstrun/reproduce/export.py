"""``jwstrun export``: a bundle that reproduces a recorded run with strun alone.

The bundle holds, for each runner call of the run (:mod:`._recorded`), one stpipe
parameter file per stage or step (written by stpipe's own ``Step.export_config``, what
``strun --save-parameters`` writes, with the resolved parameters the manifest
recorded), the associations the run read, the CRDS context (``crds.env``), a
``README.md`` and ``run.sh``: strun commands, in the run's order, writing the same
products into an output folder from an input folder given as an argument.  A
profile's corrections (``before:`` steps) become strun commands of those steps, in
order, each writing the exposure under its own name into a folder of its own, from
which the next command reads it.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from ._recorded import RUNTIME_PARAMETERS, Call, Recorded, read_recorded
from .run import correction_parameters

__all__ = ["ExportResult", "export_run", "SCRIPT_NAME"]

SCRIPT_NAME = "run.sh"
_HEADER = """#!/usr/bin/env bash
# Reproduces the jwstrun run {source} with strun alone (jwstrun export).
# Usage: ./run.sh INPUT_DIR [OUTPUT_DIR]   (or INPUT=... OUTPUT=... ./run.sh)
#   INPUT_DIR holds the run's input files (by name); OUTPUT_DIR (default ./output)
#   receives the products. CRDS_PATH may point at another copy of the cache.
set -euo pipefail
BUNDLE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
INPUT="$(cd "${{1:-${{INPUT:?usage: run.sh INPUT_DIR [OUTPUT_DIR]}}}}" && pwd)"
OUTPUT="${{2:-${{OUTPUT:-output}}}}"
mkdir -p "$OUTPUT"
OUTPUT="$(cd "$OUTPUT" && pwd)"
export CRDS_PATH="${{CRDS_PATH:-{crds_path}}}"
export CRDS_SERVER_URL={server}
export CRDS_CONTEXT={context}
"""


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the bundle, its script and parameter files, and
    what could not be exported as strun commands (``notes``)."""

    bundle: Path
    script: Path
    parameter_files: list[Path] = field(default_factory=list)
    associations: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "script": str(self.script),
                "parameter_files": [str(p) for p in self.parameter_files],
                "associations": [str(p) for p in self.associations], "notes": self.notes}


def _without_runtime(parameters: dict, top: bool = True) -> dict:
    """Resolved parameters less what jwstrun set per task (output_dir), nested."""
    out = {}
    for key, value in (parameters or {}).items():
        if key == "output_dir":
            continue
        out[key] = ({k: _without_runtime(v, False) for k, v in value.items()}
                    if key == "steps" and isinstance(value, dict) else value)
    return out


def _write_parameters(cls, parameters: dict, path: Path) -> None:
    """An stpipe parameter file of ``cls`` with ``parameters`` (stpipe's own writer)."""
    step = cls()
    step.update_pars(parameters)
    step.export_config(str(path))


def _stage_class(name: str):
    from ..stages import STAGES, step_stage

    stage = STAGES.get(name) or step_stage(name)
    return stage.load_class()


def export_run(source: str | os.PathLike, bundle: str | os.PathLike,
               crds_path: str | None = None, recorded: Recorded | None = None) -> ExportResult:
    """Write the strun bundle of the run recorded in ``source`` into ``bundle`` (a new or
    empty directory; :class:`OutputError` otherwise)."""
    recorded = recorded or read_recorded(source, crds_path=crds_path)
    bundle = Path(bundle).expanduser()
    if bundle.exists() and any(bundle.iterdir()):
        raise OutputError(f"{bundle}: exists and is not empty. Give a new directory with -o.")
    (bundle / "parameters").mkdir(parents=True, exist_ok=True)
    (bundle / "associations").mkdir(exist_ok=True)
    result = ExportResult(bundle=bundle, script=bundle / SCRIPT_NAME)
    contexts = sorted({c.context for c in recorded.calls if c.context})
    context = contexts[-1] if contexts else ""
    crds = recorded.crds
    lines = [_HEADER.format(source=recorded.source.resolve(), crds_path=shlex.quote(crds.get(
        "CRDS_PATH", "")), server=shlex.quote(crds.get(
            "CRDS_SERVER_URL", "https://jwst-serverless-mode.stsci.edu")),
        context=shlex.quote(context))]
    for number, call in enumerate(recorded.calls, 1):
        lines += _call_lines(number, call, recorded, result)
    result.script.write_text("\n".join(lines) + "\n")
    result.script.chmod(0o755)
    (bundle / "crds.env").write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in
                {**crds, "CRDS_CONTEXT": context}.items() if v))
    _write_readme(bundle, recorded, result, context)
    return result


def _call_lines(number: int, call: Call, recorded: Recorded, result: ExportResult) -> list[str]:
    """The script lines of one runner call (its parameter files written)."""
    name = f"{number:02d}-{call.stage}"
    params = result.bundle / "parameters" / f"{name}.asdf"
    _write_parameters(_stage_class(call.stage), _without_runtime(call.resolved or
                                                                 call.parameters), params)
    result.parameter_files.append(params)
    flags = " --disable-crds-steppars" if call.environment.get(
        "STPIPE_DISABLE_CRDS_STEPPARS") == "True" else ""
    lines = [f"\n# {call.stage}: {len(call.task_ids)} task(s) of the run"]
    if call.context:
        lines.append(f"export CRDS_CONTEXT={shlex.quote(call.context)}")
    if _is_set_step(call.stage):
        result.notes.append(f"{call.stage}: runs over the whole set of exposures in time "
                            "order (jwstrun step): not exported as strun commands")
        return lines
    if call.backgrounds:
        result.notes.append(f"{call.stage}: exposures paired with dedicated backgrounds by "
                            "jwstrun (loose files): write a Level-2 association (jwstrun asn "
                            "--background) and run that")
        return lines
    before = _correction_files(name, call, result)
    for given in call.inputs:
        src = _where(given)
        if given.endswith("_asn.json"):
            if before:
                result.notes.append(f"{call.stage}: the corrections of association {given} "
                                    "are not exported (jwstrun corrects its members in the task)")
            lines += _association_lines(given, call, recorded, result)
        else:
            for step_file, suffix_dir in before:
                suffix = Path(given).stem.rsplit("_", 1)[-1]
                lines.append(f'mkdir -p "$OUTPUT/{suffix_dir}"')
                lines.append(f'strun "$BUNDLE/parameters/{step_file.name}" {src} --output_dir '
                             f'"$OUTPUT/{suffix_dir}" --suffix {suffix}{flags}')
                src = f'"$OUTPUT/{suffix_dir}/{Path(given).name}"'
        lines.append(f'strun "$BUNDLE/parameters/{params.name}" {src} '
                     f'--output_dir "$OUTPUT"{flags}')
    return lines


def _is_set_step(name: str) -> bool:
    from ..stages import STAGES, step_stage

    return name not in STAGES and step_stage(name).grouping == "set"


def _where(given: str) -> str:
    """Where the script finds one input: ``$OUTPUT`` (an earlier command wrote it),
    else ``$INPUT``."""
    if given.startswith("OUTDIR/"):
        return f'"$OUTPUT/{given[len("OUTDIR/"):]}"'
    return f'"$INPUT/{Path(given).name}"'


def _correction_files(name: str, call: Call, result: ExportResult) -> list[tuple[Path, str]]:
    """One parameter file per correction step of the call, in order, and the folder
    (under OUTPUT) each writes its corrected exposures into."""
    from ..stages import SET_STEPS, resolve_step_class

    files = []
    for index, correction in enumerate(call.corrections, 1):
        if correction.get("class") in SET_STEPS:
            result.notes.append(f"{call.stage}: {correction['step']} (in before:) reads the "
                                "earlier exposures' _jump files: not exported; run it with "
                                "jwstrun step first")
            continue
        path = result.bundle / "parameters" / f"{name}-before{index}-{correction['step']}.asdf"
        parameters = {k: v for k, v in correction_parameters(correction).items()
                      if k not in RUNTIME_PARAMETERS}
        _write_parameters(resolve_step_class(correction["step"]), parameters, path)
        result.parameter_files.append(path)
        files.append((path, f"before-{name}-{index}-{correction['step']}"))
    return files


def _association_lines(given: str, call: Call, recorded: Recorded,
                       result: ExportResult) -> list[str]:
    """Copy an association into the bundle; the script puts it in OUTPUT with links to
    its members from INPUT (those no earlier command wrote)."""
    source = next((a for a in call.associations if Path(a).name == Path(given).name), given)
    data = json.loads(Path(source).read_text())
    name = Path(given).name
    (result.bundle / "associations" / name).write_text(json.dumps(data, indent=4))
    result.associations.append(result.bundle / "associations" / name)
    written = set()
    for c in recorded.calls[:recorded.calls.index(call)]:
        written.update(_outputs_of(c, recorded))
    lines = [f'cp "$BUNDLE/associations/{name}" "$OUTPUT/{name}"']
    for product in data.get("products", []):
        for member in product.get("members", []):
            base = Path(member["expname"]).name
            if base not in written:
                lines.append(f'ln -sf "$INPUT/{base}" "$OUTPUT/{base}"')
    return lines


def _outputs_of(call: Call, recorded: Recorded) -> set[str]:
    from ..manifest import read_manifest

    tasks = read_manifest(recorded.source).tasks
    return {name for t in call.task_ids for name in tasks[t].outputs}


def _write_readme(bundle: Path, recorded: Recorded, result: ExportResult, context: str) -> None:
    stages = ", ".join(f"{c.stage} ({len(c.task_ids)} task(s))" for c in recorded.calls)
    inputs = sorted({Path(i).name for c in recorded.calls for i in c.inputs
                     if not i.startswith("OUTDIR/")})
    notes = "".join(f"- {n}\n" for n in result.notes) or "- none\n"
    versions = ", ".join(f"{k} {v}" for k, v in sorted(recorded.versions.items()))
    bundle.joinpath("README.md").write_text(f"""# Reproduce {recorded.source} with strun

Written by `jwstrun export`. The run: {stages}; CRDS context `{context}`.

```
./run.sh INPUT_DIR [OUTPUT_DIR]
```

- `INPUT_DIR` holds the run's inputs by name: {", ".join(inputs) or "-"}.
- `parameters/*.asdf`: one stpipe parameter file per stage or step, the resolved
  parameters the run recorded (`strun FILE.asdf INPUT` runs it).
- `associations/`: the associations the run read; `run.sh` copies them into OUTPUT_DIR
  and links their members from INPUT_DIR.
- `crds.env`: the CRDS settings the run's workers used (`CRDS_CONTEXT` pins the
  context; `CRDS_PATH` must hold it: set it before running to use another copy).
- Versions installed when exported: {versions or "-"} (the run's are in its manifest).

Not exported:
{notes}""")
