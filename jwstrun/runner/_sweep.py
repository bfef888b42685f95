"""Parameter sweeps: ``--sweep steps.outlier_detection.snr="5.0 4.0,4.0 3.0"``.

A sweep runs the stage once per value (per combination of values when ``--sweep``
is given several times: their product), each variant into its own sub-folder of
OUTDIR, ``OUTDIR/sweep/<folder>/`` (:func:`variant_folder`).  Each variant of each
planned task is an ordinary runner task -- the same pool, Dask or cluster, resume,
manifest -- whose call parameters are the run's (profiles, ``--set``) with the
variant's values set last, checked as ``--set`` checks them.  Its task id is the
task's with the folder appended, and its products are recorded in the manifest as
``sweep/<folder>/<name>``.

:func:`jwstrun.compare.sweep.sweep_table` measures the variants afterwards.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["SWEEP_DIRNAME", "SWEEP_TABLE", "Variant", "parse_sweep", "plan_variants",
           "variant_folder", "expand_planned", "sweep_variants", "measure_sweep",
           "checked_variants", "parameter_sets"]

#: The sub-folder of OUTDIR that holds one folder per variant.
SWEEP_DIRNAME = "sweep"
#: Characters kept in a folder name; any other (a space, '/', ':' ...) becomes '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class Variant:
    """One combination of swept values: ``values`` (``{"steps.outlier_detection.snr":
    "5.0 4.0"}``, in the order given), its ``folder`` and the full call ``parameters``."""

    values: dict
    folder: str
    parameters: dict

    @property
    def subdir(self) -> str:
        """Where its products go, relative to OUTDIR (``sweep/<folder>``)."""
        return f"{SWEEP_DIRNAME}/{self.folder}"

    def to_dict(self) -> dict:
        return {"folder": self.folder, "subdir": self.subdir, "values": dict(self.values)}


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` -> ``(KEY, [V1, V2, ...])`` (:class:`ConfigError` when malformed).
    KEY is spelled as ``--set`` takes it; the values are separated by commas."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--sweep {text}: expected KEY=V1,V2,... (e.g. "
                          "steps.outlier_detection.snr=\"5.0 4.0,4.0 3.0\").")
    items = [v.strip() for v in values.split(",")]
    if any(not v for v in items):
        raise ConfigError(f"--sweep {text}: an empty value; separate the values with single "
                          "commas.")
    if len(set(items)) != len(items):
        raise ConfigError(f"--sweep {text}: a value is given twice.")
    return key, items


def variant_folder(values: dict) -> str:
    """The folder of a combination: ``KEY=VALUE`` per swept parameter, joined by ','; KEY
    without its ``steps.`` prefix, and in both every character other than letters, digits
    and ``._+-`` made ``_`` (``outlier_detection.snr=5.0_4.0``)."""
    parts = []
    for key, value in values.items():
        key = key[len("steps."):] if key.startswith("steps.") else key
        parts.append(f"{_UNSAFE.sub('_', key)}={_UNSAFE.sub('_', value) or '_'}")
    return ",".join(parts)


def plan_variants(pipeline: str, sweeps: Iterable[str], profiles: Iterable[str] = (),
                  sets: Iterable[str] = ()) -> list[Variant]:
    """The variants of ``sweeps`` (``--sweep`` texts; several: every combination), each
    with its call parameters (profiles, then ``sets``, then its values), checked against
    the pipeline's spec before anything runs."""
    from .plan import call_parameters

    parsed = [parse_sweep(text) for text in sweeps]
    keys = [key for key, _values in parsed]
    repeated = next((k for k in keys if keys.count(k) > 1), None)
    if repeated:
        raise ConfigError(f"--sweep {repeated}: given twice; list all its values in one "
                          "--sweep, separated by commas.")
    variants: list[Variant] = []
    folders: dict[str, dict] = {}
    for combination in itertools.product(*(values for _key, values in parsed)):
        values = dict(zip(keys, combination, strict=True))
        folder = variant_folder(values)
        if folder in folders:
            raise ConfigError(
                f"--sweep: {_spelled(folders[folder])} and {_spelled(values)} would share the "
                f"folder {SWEEP_DIRNAME}/{folder} (characters other than letters, digits and "
                "._+- become _); sweep values that differ in those characters.")
        folders[folder] = values
        extra = [f"{key}={value}" for key, value in values.items()]
        try:
            parameters = call_parameters(pipeline, profiles, [*sets, *extra])
        except ConfigError as exc:  # said as --set says it, of the value swept
            text = str(exc)
            for item in extra:
                text = text.replace(f"--set {item}:", f"--sweep {item}:")
            raise ConfigError(text) from exc
        variants.append(Variant(values, folder, parameters))
    return variants


def parameter_sets(parameters: dict, variants: list[Variant]) -> list[tuple]:
    """``(variant, its call parameters)`` of each variant, or ``[(None, parameters)]``
    without a sweep: what a check made before anything runs (the memory estimate,
    abs_refcat, maximum_cores) is made with, since the tasks run with these."""
    return [(v, v.parameters) for v in variants] or [(None, parameters)]


def checked_variants(parameters: dict, variants: list[Variant], check) -> dict:
    """``check(parameters) -> parameters`` applied to the run's parameters without a sweep,
    else to each variant's (which it replaces); a variant's error is said as ``--sweep
    KEY=VALUE: <the error>``, naming the values that make it.  The run's parameters,
    returned unchanged with a sweep, run no task then."""
    if not variants:
        return check(parameters)
    for variant in variants:
        with said_of(variant):
            variant.parameters = check(variant.parameters)
    return parameters


class said_of:
    """Re-raise a :class:`JwstrunError` raised inside as ``--sweep KEY=VALUE: <message>``
    for ``variant`` (nothing for None)."""

    def __init__(self, variant: Variant | None):
        self.variant = variant

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        from ..errors import JwstrunError

        if self.variant is None or not isinstance(exc, JwstrunError):
            return False
        raise variant_error(self.variant, exc) from None


def variant_error(variant: Variant | None, exc: Exception) -> Exception:
    """``exc`` said of ``variant`` (None: ``exc`` itself): an error of the same class whose
    message starts with ``--sweep KEY=VALUE: ``."""
    if variant is None:
        return exc
    spelled = " ".join(f"{k}={v}" for k, v in variant.values.items())
    return type(exc)(f"--sweep {spelled}: {exc}")


def _spelled(values: dict) -> str:
    return " ".join(f"{k}={v!r}" for k, v in values.items())


def expand_planned(planned: list, variants: list[Variant]) -> list:
    """Each planned task once per variant (a copy carrying the variant)."""
    if not variants:
        return planned
    from .plan import _check_unique_products

    expanded = [dataclasses.replace(item, variant=variant) for variant in variants
                for item in planned]
    _check_unique_products(expanded)
    return expanded


def variant_task_suffix(variant: Variant | None) -> str:
    """What a variant adds to its task's id (``-outlier_detection.snr-5.0_4.0``)."""
    if variant is None:
        return ""
    return "-" + variant.folder.replace("=", "-").replace(",", "-")


def sweep_variants(stage, settings) -> list[Variant]:
    """The variants of a run's ``settings.sweep`` (none without), checked before OUTDIR is
    touched; their parameters get what the run adds to its own (``--save-bsub``)."""
    from pathlib import Path

    from ..errors import InputError
    from .plan import merge_parameters

    sweeps = list(settings.sweep or ())
    if not sweeps:
        if settings.truth is not None:
            raise ConfigError("truth= is for a sweep's table (sweep=); for a run's catalog "
                              "against a truth, use 'jwstrun report OUTDIR --truth FILE'.")
        return []
    if stage.is_step:
        raise ConfigError("--sweep: jwstrun step does not sweep; sweep the parameters of "
                          "image2 or image3.")
    if settings.truth is not None and not Path(settings.truth).is_file():
        raise InputError(f"{settings.truth}: no such file. Give --truth an ECSV catalogue of "
                         "the injected sources (ra, dec; the simulator's truth_sources.ecsv).")
    variants = plan_variants(stage.name, sweeps, settings.profiles, settings.sets)
    if settings.extra_parameters:
        for variant in variants:
            variant.parameters = merge_parameters(variant.parameters, settings.extra_parameters)
    return variants


def measure_sweep(summary, variants: list[Variant], truth) -> None:
    """The sweep's table (:func:`jwstrun.compare.sweep.sweep_table`) as ``summary.sweep``,
    written as ``OUTDIR/sweep.ecsv`` (nothing without variants)."""
    if variants:
        from ..compare.sweep import sweep_table, write_sweep_table

        summary.sweep = sweep_table(summary, variants, truth=truth)
        write_sweep_table(summary.sweep, variants, summary.outdir / SWEEP_TABLE)


#: The sweep's table in OUTDIR.
SWEEP_TABLE = "sweep.ecsv"
