"""The Python API: what ``import jwstrun`` offers, and docs/api.md's example run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jwstrun

DOCS = Path(__file__).resolve().parents[1] / "docs"
HEAVY = ("jwst", "crds", "stpipe", "stdatamodels", "astropy", "gwcs")


def api_example() -> str:
    """The python block after ``<!-- api-example -->`` in docs/api.md."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- api-example -->\s*```python\n(.*?)\n```", text, re.S)
    assert match, "docs/api.md lost its <!-- api-example --> python block"
    return match.group(1)


def test_import_jwstrun_never_imports_the_pipeline_stack():
    code = (
        "import sys, jwstrun; jwstrun.run_image2; jwstrun.make_associations; "
        "jwstrun.validate_files; jwstrun.resolve_bestrefs; jwstrun.load_profile\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_public_name_is_the_library_object():
    from jwstrun import asn, refs, runner, validate

    for name in jwstrun.__all__:
        assert getattr(jwstrun, name) is not None, name
    assert jwstrun.run_image2 is runner.run_image2
    assert jwstrun.make_associations is asn.make_associations
    assert jwstrun.validate_files is validate.validate_files
    assert jwstrun.prefetch is refs.prefetch
    assert set(jwstrun.__all__) <= set(dir(jwstrun))
    with pytest.raises(AttributeError, match="no_such_name"):
        jwstrun.no_such_name  # noqa: B018


def test_submodules_stay_reachable():
    # ``validate`` is a module, not an exported function: the lazy look-up must not hide it.
    from jwstrun import validate

    assert validate.__name__ == "jwstrun.validate"


def test_api_page_names_only_exported_functions():
    used = set(re.findall(r"jwstrun\.([A-Za-z_]+)\(", (DOCS / "api.md").read_text()))
    used |= set(re.findall(r"^\| `([a-z_]+)\(", (DOCS / "api.md").read_text(), re.M))
    assert used, "no jwstrun.name( found in docs/api.md"
    assert used <= set(jwstrun.__all__), sorted(used - set(jwstrun.__all__))


def test_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/api.md's example, executed the way a notebook cell would (same process)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_example"}
    exec(compile(api_example(), "docs/api.md", "exec"), namespace)  # noqa: S102

    out = capsys.readouterr().out
    stage2, stage3, reports = namespace["stage2"], namespace["stage3"], namespace["reports"]
    assert isinstance(stage2, jwstrun.RunSummary) and isinstance(stage3, jwstrun.RunSummary)
    assert len(stage2.succeeded) == 2 and stage2.jobs == 2
    names = sorted(p.name for p in stage3.outputs)
    assert any(n.endswith("_i2d.fits") for n in names), names
    assert sum(n.endswith("_crf.fits") for n in names) == 2, names
    assert all(isinstance(r, jwstrun.FileReport) and r.ok for r in reports)
    manifest = json.loads(Path(stage3.manifest).read_text())
    assert manifest["tasks"], manifest
    # the fast profile skipped Stage 2's resample: no _i2d per exposure
    assert not [p for p in stage2.outputs if p.name.endswith("_i2d.fits")]
    assert "from profile fast" in out
    assert namespace["refs"].files and namespace["refs"].context.endswith(".pmap")


def test_runner_functions_show_their_parameters():
    """run_image2/run_image3 and every public runner function take explicit parameters
    (no **kwargs), named as the command-line options of jwstrun image2/image3."""
    import inspect

    import click

    from jwstrun import runner
    from jwstrun.cli import cli

    for name in runner.__all__:
        value = getattr(runner, name)
        if not inspect.isfunction(value):
            continue
        kinds = {p.kind for p in inspect.signature(value).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, name
    # the options of the commands are parameters of the functions, by the same names
    # (the CLI's --no-validate is validate=False, --crds-env is crds_env_file, --report
    # is previews; the Dask options are gathered in dask_options)
    renamed = {"no_validate": "validate", "report": "previews", "no_report": "previews"}
    # (-v/-q/--debug set the CLI's logging, as they do for every command)
    cli_only = {"no_progress", "as_json", "scheduler", "cluster", "cluster_cores",
                "cluster_memory", "cluster_walltime", "cluster_jobs", "cluster_options",
                "verbose", "quiet", "debug"}
    for command, function in (("detector1", jwstrun.run_detector1),
                              ("image2", jwstrun.run_image2), ("image3", jwstrun.run_image3),
                              ("step", jwstrun.run_step)):
        parameters = inspect.signature(function).parameters
        options = {p.name for p in cli.commands[command].params if isinstance(p, click.Option)}
        options.discard("help")
        for option in options - cli_only:
            assert renamed.get(option, option) in parameters, (command, option)
    assert "max_tasks_per_worker" in inspect.signature(jwstrun.run_image2).parameters
