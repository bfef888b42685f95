"""Load, layer and validate step-parameter profiles for the stages jwstrun runs.

A profile is a small YAML file of plain data whose sections are the stage names
of :data:`jwstrun.stages.STAGES` (``image2``, ``image3``)::

    description: Quick look
    why:
      image2.steps.resample.skip: Stage 3 never reads the Stage 2 _i2d.
    image2:
      steps:
        resample:
          skip: true

A section may also list corrections to run before the stage's pipeline, each an
stpipe step named by its registered alias and checked against its own spec
(:mod:`jwstrun.profiles._corrections`, :mod:`jwstrun.profiles.steps`)::

    image2:
      before:
        - step: clean_flicker_noise
          autoparam: true
        - step: snowblind

Values are checked and coerced with the stage's own stpipe spec (configobj
``Validator``), so a profile means exactly what the same text would mean in an
stpipe ``.cfg`` file or on the ``strun`` command line.

Layering, lowest first (the first two happen inside stpipe at run time)::

    step spec default < CRDS pars-* reference < built-in profiles
        < user profile files < --set KEY=VALUE

Nothing here imports jwst at import time; the specs are read once per process
(and cached on disk per jwst/stpipe version); :func:`clear_caches` forgets what
the process holds.

Modules: ``model`` (settings, profiles, loading), ``spec`` (stage specs, their
cache, coercion), ``steps`` (the registered stpipe steps a ``before:`` list names,
their specs), ``_corrections`` (``before:`` lists), ``_yaml`` (the safe YAML reader), ``layers`` (precedence,
``--set``), ``export`` (stpipe parameter files for strun).
"""

from ._yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from .export import export_parameter_file, export_profile
from .layers import (
    build_call_parameters,
    build_corrections,
    crds_steppars_environ,
    merge_layers,
    parse_sets,
    resolve_parameters,
)
from .model import (
    Origin,
    ParameterSet,
    Profile,
    Setting,
    builtin_profile_names,
    builtin_profiles_dir,
    list_profiles,
    load_profile,
    load_profiles,
)
from ._corrections import Correction
from .spec import ParamSpec, PipelineSpec, StepSpec, pipeline_spec, spec_default
from .steps import registered_steps

__all__ = [
    "Origin",
    "Setting",
    "Profile",
    "ParameterSet",
    "ParamSpec",
    "StepSpec",
    "PipelineSpec",
    "builtin_profiles_dir",
    "builtin_profile_names",
    "list_profiles",
    "load_profile",
    "load_profiles",
    "parse_sets",
    "pipeline_spec",
    "spec_default",
    "merge_layers",
    "resolve_parameters",
    "build_call_parameters",
    "build_corrections",
    "Correction",
    "registered_steps",
    "crds_steppars_environ",
    "export_parameter_file",
    "export_profile",
    "clear_caches",
]


def clear_caches() -> None:
    """Forget the specs (stages' and correction steps'), the step registry and the
    validator this process holds (read again on next use)."""
    from . import spec, steps

    spec.clear_caches()
    steps.clear_caches()
