"""CRDS in one place: environment, context, best references, prefetch and diagnosis.

Everything goes through the stock crds client working on a real local cache;
nothing here re-implements crds' selection rules.

Where things live
-----------------
- :mod:`~jwstrun.refs.env`: the pure ``CRDS_*`` rules (env files, the
  serverless URL, the context-name rule, the process and worker environments);
  never imports crds.
- :mod:`~jwstrun.refs.setup`: what a set-up amounts to (not configured,
  offline, online; a filled cache or not) and the advice when crds has nothing
  to work from; never imports crds.
- :mod:`~jwstrun.refs._crds`: the only module that imports crds.
- :mod:`~jwstrun.refs.reftypes`: which reference types a stage asks for.
- :mod:`~jwstrun.refs.bestrefs`: best references, grouped.
- :mod:`~jwstrun.refs.prefetch`: filling the cache for offline runs.
- :mod:`~jwstrun.refs.doctor`: the set-up check.
- :mod:`~jwstrun.refs.refcat`: tweakreg's ``abs_refcat`` checked before a run, and a
  local astrometric catalogue cut to the inputs' footprints (``jwstrun refs refcat``).

Environment first
-----------------
crds reads ``CRDS_SERVER_URL`` when it is imported and caches the server
configuration and context per process.  So a process must settle its CRDS
variables *before* anything imports crds (or jwst/stpipe, which import it)::

    env = crds_environment(crds_path="sim/crds_cache")   # pure: reads, never imports crds
    apply_crds_environment(env)                          # os.environ (+ resync crds if loaded)
    resolution = resolve_bestrefs(["sim/jw01_rate.fits"])

:func:`apply_crds_environment` also resynchronises an already imported crds
(through crds' public configuration functions), so tests and long-lived
processes can switch caches; worker processes should still receive the
variables in their environment at spawn time (see :func:`worker_environment`).

Caches
------
A process remembers server probes, contexts, reference types and the FITS
locations of matching keys; :func:`clear_caches` forgets them all (a notebook
or a Dask worker that lives through a jwst upgrade or a network change).
"""

from __future__ import annotations

from .._pipeline_cache import NO_CACHE_VARIABLE
from ._crds import clear_context_cache, context_in_use
from .bestrefs import RefGroup, Resolution, clear_schema_cache, resolve_bestrefs
from .doctor import DoctorReport, doctor, filesystem_of, storage_kind
from .env import (
    CONTEXT_NAME,
    OBSERVATORY,
    PROBE_TIMEOUT_SECONDS,
    SERVERLESS_URL,
    UNREACHABLE_TIMEOUT_SECONDS,
    applied_crds_environment,
    apply_crds_environment,
    check_context_name,
    clear_probe_cache,
    crds_environment,
    is_context_name,
    is_serverless,
    read_env_file,
    redact_url,
    server_reachable,
    worker_environment,
    write_env_file,
)
from .prefetch import FetchedFile, PrefetchReport, prefetch
from .refcat import RefcatCut, check_abs_refcat, cut_catalogue, named_catalogues
from .reftypes import clear_reftype_cache, reftypes_for
from .setup import JWST_SERVER_URL, CrdsSetup, check_setup, crds_setup, setup_problem

__all__ = [
    "OBSERVATORY",
    "SERVERLESS_URL",
    "JWST_SERVER_URL",
    "CONTEXT_NAME",
    "PROBE_TIMEOUT_SECONDS",
    "UNREACHABLE_TIMEOUT_SECONDS",
    "NO_CACHE_VARIABLE",
    "crds_environment",
    "apply_crds_environment",
    "applied_crds_environment",
    "worker_environment",
    "read_env_file",
    "write_env_file",
    "CrdsSetup",
    "crds_setup",
    "setup_problem",
    "check_setup",
    "redact_url",
    "server_reachable",
    "is_serverless",
    "is_context_name",
    "check_context_name",
    "context_in_use",
    "reftypes_for",
    "RefGroup",
    "Resolution",
    "resolve_bestrefs",
    "FetchedFile",
    "PrefetchReport",
    "prefetch",
    "DoctorReport",
    "doctor",
    "filesystem_of",
    "storage_kind",
    "RefcatCut",
    "check_abs_refcat",
    "cut_catalogue",
    "named_catalogues",
    "clear_caches",
]


def clear_caches() -> None:
    """Forget what this process remembered about CRDS: server probes, the context in
    use, reference types and the schema's FITS locations (the disk caches stay)."""
    clear_probe_cache()
    clear_context_cache()
    clear_reftype_cache()
    clear_schema_cache()
