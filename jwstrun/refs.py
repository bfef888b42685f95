"""CRDS in one place: environment, context, best references, prefetch and diagnosis.

This is the only jwstrun module that imports :mod:`crds`.  Everything goes
through the stock crds client working on a real local cache; nothing here
re-implements crds' selection rules.

Environment first
-----------------
crds reads ``CRDS_SERVER_URL`` when it is imported and caches the server
configuration and context per process.  So a process must settle its CRDS
variables *before* anything imports crds (or jwst/stpipe, which import it)::

    env = crds_environment(crds_path="sim/crds_cache")   # pure: reads, never imports crds
    apply_crds_environment(env)                          # os.environ (+ resync crds if loaded)
    resolution = resolve_bestrefs(["sim/jw01_rate.fits"])

:func:`apply_crds_environment` also resynchronises an already imported crds
(crds' own ``config.set_crds_state`` and function-cache reset), so tests and
long-lived processes can switch caches; worker processes should still receive
the variables in their environment at spawn time (see :func:`worker_environment`).

Grouping
--------
:func:`resolve_bestrefs` asks crds once per distinct set of *matching
parameters*.  Which header keywords matter is read from the context's own
rmaps (``rmap.get_required_parkeys``).  Dates are not compared literally: the
UseAfter dates of those rmaps cut time into intervals, and every exposure in
the same interval gets the same answer, so 500 exposures of one detector and
filter taken over a week cost one crds call, not 500.
"""

from __future__ import annotations

import bisect
import contextlib
import glob as globmod
import json
import logging
import os
import re
import shlex
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ._pipeline_cache import NO_CACHE_VARIABLE, cached_json, pipeline_cache_path
from .errors import CrdsError, InputError

__all__ = [
    "OBSERVATORY",
    "SERVERLESS_URL",
    "PIPELINES",
    "crds_environment",
    "apply_crds_environment",
    "applied_crds_environment",
    "worker_environment",
    "read_env_file",
    "server_reachable",
    "is_serverless",
    "context_in_use",
    "expand_inputs",
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
]

log = logging.getLogger(__name__)

OBSERVATORY = "jwst"
#: Any CRDS_SERVER_URL containing "serverless" makes crds skip every network call.
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"
#: Seconds crds may wait on a server that does not answer (its default is 3600).
UNREACHABLE_TIMEOUT_SECONDS = "5"
#: Seconds the reachability probe waits (connect only, DNS included).
PROBE_TIMEOUT_SECONDS = 3.0

#: Pipeline aliases accepted by :func:`reftypes_for` -> stpipe class name.
PIPELINES = {
    "image2": "Image2Pipeline",
    "calwebb_image2": "Image2Pipeline",
    "image2pipeline": "Image2Pipeline",
    "image3": "Image3Pipeline",
    "calwebb_image3": "Image3Pipeline",
    "image3pipeline": "Image3Pipeline",
}

# Which pipelines will read an input of a given product type.
_PIPELINES_FOR_PRODUCT = {
    "rate": ("image2", "image3"),
    "rateints": ("image2", "image3"),
    "cal": ("image3",),
    "calints": ("image3",),
    "crf": ("image3",),
}

# Filesystems that every node of a cluster typically sees.
_SHARED_FS = {
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "cephfs", "ceph",
    "panfs", "wekafs", "fuse.glusterfs", "glusterfs", "fuse.sshfs", "afs", "orangefs",
    "fuse.beegfs", "fuse.cephfs", "9p", "virtiofs",
}
_LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "overlay", "tmpfs", "ramfs", "f2fs"}


# ---------------------------------------------------------------------------
# Environment (pure: never imports crds)


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """Read ``export NAME=value`` lines (as written by ``jwstrun simulate``) into a dict.

    Relative ``CRDS_PATH`` values are taken relative to the file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: CRDS environment file not found. Give the crds.env "
                         "written by `jwstrun simulate OUTDIR`, or use --crds-path.")
    env: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise InputError(f"{path}:{lineno}: expected 'export NAME=value', got {raw!r}.")
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise InputError(f"{path}:{lineno}: cannot parse value ({exc}).") from exc
        env[name.strip()] = parts[0] if parts else ""
    if "CRDS_PATH" in env and not os.path.isabs(env["CRDS_PATH"]):
        env["CRDS_PATH"] = str((path.parent / env["CRDS_PATH"]).resolve())
    return env


def redact_url(url: str | None) -> str | None:
    """``url`` with its user info (``user:password@``, or a token as user) and the values
    of its query and fragment (``?token=...``) shown as ``***``.

    For messages and logs: a URL with credentials never reaches the terminal,
    a log file or the manifest.
    """
    if not url or not any(c in url for c in "@?#;"):
        return url
    try:
        parsed = urlparse(url)
    except ValueError:  # e.g. an unclosed '[': drop what may hold a secret
        return re.sub(r"//[^/]*@", "//***@", re.split(r"[?#;]", url)[0])
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{key}=***" if sep else "***"
                     for key, sep, _value in (p.partition("=") for p in parsed.query.split("&")))
    return parsed._replace(netloc=netloc, params="***" if parsed.params else "",
                           query=query if parsed.query else "",
                           fragment="***" if parsed.fragment else "").geturl()


def is_serverless(url: str | None) -> bool:
    """True when crds will not contact any server for this CRDS_SERVER_URL."""
    return bool(url) and ("serverless" in url or "server-less" in url)


_probe_cache: dict[str, tuple[bool, str]] = {}


def server_reachable(url: str | None, timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """Whether the CRDS server at ``url`` accepts a connection, answered within ``timeout``.

    A TCP connect (DNS lookup included) run in a daemon thread, so a resolver or
    a firewall that drops packets cannot hold the caller longer than ``timeout``.
    Returns ``(reachable, detail)``; results are remembered per URL in this process.
    """
    if not url:
        return False, "CRDS_SERVER_URL is not set"
    if is_serverless(url):
        return False, "serverless mode: crds never contacts a server"
    if url in _probe_cache:
        return _probe_cache[url]
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False, f"cannot parse a host name from {redact_url(url)!r}"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[tuple[bool, str]] = []

    def _connect() -> None:
        start = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            outcome.append((True, f"{host}:{port} answered in {time.monotonic() - start:.2f} s"))
        except OSError as exc:
            outcome.append((False, f"{host}:{port}: {exc.strerror or exc}"))

    worker = threading.Thread(target=_connect, daemon=True, name="crds-probe")
    worker.start()
    worker.join(timeout + 0.5)
    result = outcome[0] if outcome else (False, f"{host}:{port}: no answer within {timeout:g} s")
    _probe_cache[url] = result
    return result


def crds_environment(
    crds_path: str | os.PathLike | None = None,
    context: str | None = None,
    env_file: str | os.PathLike | None = None,
    offline: bool = False,
    probe: bool = True,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The complete set of ``CRDS_*`` variables a jwstrun process should run with.

    Precedence: arguments > ``env_file`` (``export NAME=value`` lines) > ``base``
    (default ``os.environ``).  ``crds_path`` sets CRDS_PATH and, when no server
    URL is configured anywhere, the serverless URL so crds stays off the network.
    ``offline`` forces the serverless URL.  ``context`` sets CRDS_CONTEXT.  When a
    real server URL is configured but does not answer a short probe, the crds
    client timeout is lowered (its default is one hour per request).

    Does not import crds and does not modify ``os.environ``: pass the result to
    :func:`apply_crds_environment`.
    """
    base = dict(os.environ if base is None else base)
    # "None" is how an imported crds exports its unset settings; it configures nothing
    env = {k: v for k, v in base.items() if k.startswith("CRDS_") and v not in ("None", "none")}
    if env.get("CRDS_CLIENT_TIMEOUT_SECONDS") == _MANAGED["CRDS_CLIENT_TIMEOUT_SECONDS"]:
        del env["CRDS_CLIENT_TIMEOUT_SECONDS"]  # crds' own default, exported at import
    from_file = {}
    if env_file is not None:
        from_file = {k: v for k, v in read_env_file(env_file).items() if k.startswith("CRDS_")}
        env.update(from_file)
    if crds_path is not None:
        env["CRDS_PATH"] = str(Path(crds_path).expanduser().resolve())
        env.setdefault("CRDS_SERVER_URL", SERVERLESS_URL)
    if offline:
        env["CRDS_SERVER_URL"] = SERVERLESS_URL
    if context:
        env["CRDS_CONTEXT"] = _check_context_name(context)
    _check_settings(env, lambda key: f"in {env_file}" if key in from_file else
                    "in the environment")
    url = env.get("CRDS_SERVER_URL")
    if url is None and "CRDS_PATH" in env:
        # crds' own default when the URL is unset is a serverless URL; say so explicitly.
        env["CRDS_SERVER_URL"] = SERVERLESS_URL
    elif url and not is_serverless(url) and probe and "CRDS_CLIENT_TIMEOUT_SECONDS" not in env:
        reachable, detail = server_reachable(url)
        if not reachable:
            log.warning("CRDS server %s does not answer (%s); using the local cache with a "
                        "%s s client timeout.", redact_url(url), detail, UNREACHABLE_TIMEOUT_SECONDS)
            env["CRDS_CLIENT_TIMEOUT_SECONDS"] = UNREACHABLE_TIMEOUT_SECONDS
    return env


def _check_settings(env: dict[str, str], source) -> None:
    """Refuse a CRDS_SERVER_URL or CRDS_CLIENT_TIMEOUT_SECONDS crds could not use.

    crds would fail on them with a bare ValueError (at import, in every worker).
    ``source(name)`` says where a variable was set.  The URL itself is not
    shown: it may hold a password.
    """
    url = env.get("CRDS_SERVER_URL")
    if url and not is_serverless(url):
        try:
            parsed = urlparse(url)
            parsed.port  # noqa: B018 - raises ValueError for a bad port
            problem = None if parsed.scheme in ("http", "https") and parsed.hostname else \
                "expected http(s)://host"
        except ValueError as exc:
            problem = str(exc)
        if problem:
            raise CrdsError(
                f"CRDS_SERVER_URL ({source('CRDS_SERVER_URL')}) is not a usable URL ({problem}). "
                "Set it to a CRDS server such as https://jwst-crds.stsci.edu, or unset it to work "
                "from the local cache (CRDS_PATH or --crds-path)."
            )
    timeout = env.get("CRDS_CLIENT_TIMEOUT_SECONDS")
    if timeout is not None and not re.fullmatch(r"\s*\+?0*[1-9][0-9]*\s*", timeout):
        raise CrdsError(
            f"CRDS_CLIENT_TIMEOUT_SECONDS={timeout!r} ({source('CRDS_CLIENT_TIMEOUT_SECONDS')}) "
            "is not a whole number of seconds. Set it to a positive integer such as 30, or "
            "unset it."
        )


def _check_context_name(context: str) -> str:
    name = str(context).strip()
    if not re.fullmatch(r"jwst_\d{4}\.pmap", name) and name not in ("jwst-latest", "jwst-operational", "latest"):
        raise InputError(
            f"--crds-context {context!r}: expected a JWST pipeline context name such as "
            "jwst_1322.pmap (see `jwstrun refs doctor` for the contexts in your cache)."
        )
    return name


#: CRDS variables jwstrun sets or clears.  crds exports its own settings' defaults into
#: os.environ when imported and reads them back later, so after import a managed
#: variable is reset to crds' default string rather than deleted.
_MANAGED = {
    "CRDS_PATH": None,
    "CRDS_SERVER_URL": None,
    "CRDS_CONTEXT": None,
    "CRDS_READONLY_CACHE": None,
    "CRDS_PATH_SINGLE": None,
    "CRDS_MAPPATH": None,
    "CRDS_REFPATH": None,
    "CRDS_CFGPATH": None,
    "CRDS_CLIENT_TIMEOUT_SECONDS": "3600",
    "CRDS_CONFIG_URI": "None",
    "CRDS_MAPPING_URI": "None",
    "CRDS_REFERENCE_URI": "None",
    "CRDS_PICKLE_URI": "None",
}


def apply_crds_environment(env: dict[str, str]) -> dict[str, str]:
    """Make ``env`` (from :func:`crds_environment`) the process's CRDS configuration.

    Sets the ``CRDS_*`` variables of ``env`` in ``os.environ`` and clears the
    location/server/context variables ``env`` does not name.  Call it before crds,
    stpipe or jwst are imported.  If crds is already imported, its cached server
    URL, configuration and context are reset with crds' own
    ``config.set_crds_state`` and ``utils.clear_function_caches``.

    Returns the ``CRDS_*`` variables as they were before; a library call that
    should not change its caller's settings uses :func:`applied_crds_environment`.
    """
    env = {k: str(v) for k, v in env.items() if k.startswith("CRDS_")}
    previous = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    _context_cache.clear()
    if "crds" not in sys.modules:
        for key in _MANAGED:
            if key not in env:
                os.environ.pop(key, None)
        os.environ.update(env)
        return previous
    from crds.core import config, utils

    state = config.get_crds_state()
    for key, default in _MANAGED.items():
        if key in env:
            continue
        if default is None:
            state.pop(key, None)
        else:
            state[key] = default
    state.update(env)
    state["CRDS_REF_SUBDIR_MODE"] = "None"  # re-read the mode tag of the (new) cache
    state["_CRDS_CACHE_READONLY"] = False  # crds' in-process flag; CRDS_READONLY_CACHE still counts
    config.set_crds_state(state)
    for key in ("CRDS_REF_SUBDIR_MODE", "CRDS_VERBOSITY", "PASS_INVALID_VALUES"):
        # set_crds_state exports its own bookkeeping entries; they are not crds settings
        if key not in env:
            os.environ.pop(key, None)
    utils.clear_function_caches()
    _context_cache.clear()
    return previous


@contextlib.contextmanager
def applied_crds_environment(env: dict[str, str]):
    """:func:`apply_crds_environment` for a ``with`` block, then the caller's settings again.

    A run applies the CRDS_* variables of its own cache (a crds.env may pin
    CRDS_CONTEXT).  Left in ``os.environ`` they would become the defaults of
    the next call in a long-lived process (a notebook, a test session, a Dask
    client), whose other cache would then be read under the first one's
    context.  On exit the previous variables are put back and crds' in-process
    state is resynchronised with them.
    """
    previous = apply_crds_environment(env)
    try:
        yield
    finally:
        for key in env:
            # unmanaged settings (CRDS_MODE...) are not cleared by apply_crds_environment
            if key.startswith("CRDS_") and key not in previous and key not in _MANAGED:
                os.environ.pop(key, None)
        apply_crds_environment(previous)


def worker_environment(env: dict[str, str], context: str | None) -> dict[str, str]:
    """Variables for pipeline workers after a successful :func:`prefetch`.

    Workers never download (CRDS_READONLY_CACHE=1, which also stops concurrent
    writes into one cache), never contact a server (serverless URL) and use the
    exact context the references were fetched for (CRDS_CONTEXT; ``None`` while
    it is not known yet: the workers of a pool started early get it with each task).
    """
    worker = dict(env)
    worker["CRDS_READONLY_CACHE"] = "1"
    worker["CRDS_SERVER_URL"] = SERVERLESS_URL
    if context is not None:
        worker["CRDS_CONTEXT"] = context
    # crds' default, not a value inherited from the caller's environment: workers never wait
    worker["CRDS_CLIENT_TIMEOUT_SECONDS"] = _MANAGED["CRDS_CLIENT_TIMEOUT_SECONDS"]
    return worker


# ---------------------------------------------------------------------------
# crds access helpers


@contextlib.contextmanager
def _quiet_crds():
    """Keep crds' INFO chatter (build-context lookups...) out of jwstrun output."""
    crds_logger = logging.getLogger("CRDS")
    old = crds_logger.level
    if not log.isEnabledFor(logging.DEBUG):
        crds_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        crds_logger.setLevel(old)


def _crds_path() -> str:
    from crds.core import config

    return config.get_crds_path()


_context_cache: dict[str | None, str] = {}


def context_in_use(context: str | None = None) -> str:
    """The .pmap crds (and so stpipe/jwst) will use: ``context`` > CRDS_CONTEXT > default.

    The default is what the installed jwst would choose: crds asks the server
    for the build context of this jwst version; without a server it is the
    cache's ``operational_context`` from ``config/jwst/server_config``.
    This is stpipe's own ``crds_client.get_context_used`` logic.
    """
    # keyed by the settings that decide it: one process may switch caches
    key = (context, _crds_path(), os.environ.get("CRDS_CONTEXT"), os.environ.get("CRDS_SERVER_URL"))
    if key in _context_cache:
        return _context_cache[key]
    if context:
        _check_context_name(context)
    from crds.core import heavy_client

    cfg = Path(_crds_path()) / "config" / OBSERVATORY / "server_config"
    if not cfg.is_file() and not _env_value("CRDS_CONFIG_URI"):
        reachable = server_reachable(os.environ.get("CRDS_SERVER_URL"))[0]
        if not reachable:
            raise CrdsError(
                f"{cfg}: missing, so crds cannot tell which context to use offline. "
                "Point CRDS_PATH (or --crds-path) at a synced CRDS cache, or run "
                "`jwstrun refs prefetch INPUTS` once on a node with network."
            )
    try:
        with _quiet_crds():
            name = heavy_client.get_processing_mode(OBSERVATORY, context)[1]
    except SystemExit as exc:  # crds' fatal_error_on_exception exits on an unusable cache
        raise CrdsError(
            f"crds could not load its configuration from {cfg}. Check that the file is a "
            "server_config dict (observatory, operational_context, bad_files_list, last_synced)."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - crds raises many types here
        raise CrdsError(f"cannot determine the CRDS context: {exc}") from exc
    _context_cache[key] = str(name)
    return str(name)


def _load_context(context: str):
    """Load the pmap from the cache, with an actionable error if it is not there."""
    import crds

    try:
        with _quiet_crds():
            return crds.get_pickled_mapping(context)
    except Exception as exc:  # noqa: BLE001 - IOError, MappingError, ChecksumError...
        mappath = Path(_crds_path()) / "mappings" / OBSERVATORY
        present = sorted(p.name for p in mappath.glob("jwst_*.pmap")) if mappath.is_dir() else []
        hint = f" Contexts in this cache: {', '.join(present)}." if present else ""
        raise CrdsError(
            f"CRDS context {context} cannot be loaded from {mappath} ({type(exc).__name__}: "
            f"{exc}). Run `jwstrun refs prefetch` on a node with network, or set CRDS_PATH to a "
            f"synced cache.{hint}"
        ) from exc


# ---------------------------------------------------------------------------
# Inputs


def expand_inputs(inputs) -> list[Path]:
    """Files, glob patterns and association JSON files -> exposure paths (unique, ordered)."""
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matches = sorted(globmod.glob(os.path.expanduser(text)))
            if not matches:
                raise InputError(f"{text}: no file matches this pattern.")
            candidates = [Path(m) for m in matches]
        else:
            candidates = [Path(text)]
        for path in candidates:
            if path.suffix.lower() == ".json":
                paths.extend(_association_members(path))
            else:
                if not path.exists():
                    raise InputError(f"{path}: file not found. Check the path or the glob pattern.")
                paths.append(path)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.abspath(path), path)
    if not unique:
        raise InputError("no input files given. Pass *_rate.fits / *_cal.fits files, globs or "
                         "association JSON files.")
    return list(unique.values())


def _association_members(path: Path) -> list[Path]:
    if not path.is_file():
        raise InputError(f"{path}: association file not found.")
    try:
        asn = json.loads(path.read_text())
        products = asn["products"]
        members = [m for product in products for m in product["members"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a JWST association (expected JSON with products[].members[].expname): "
            f"{exc}"
        ) from exc
    result = []
    for member in members:
        name = member.get("expname") if isinstance(member, dict) else None
        if not name:
            raise InputError(f"{path}: a member has no 'expname'.")
        member_path = Path(name) if os.path.isabs(name) else path.parent / name
        if not member_path.exists():
            raise InputError(f"{path}: member {name} not found at {member_path}.")
        result.append(member_path)
    return result


# ---------------------------------------------------------------------------
# Which reftypes the pipelines ask for


_reftype_cache: dict[tuple, list[str]] = {}

#: Set to any value to always read reference types from jwst (no disk cache).
_REFTYPE_CACHE_FORMAT = 1


def reftypes_for(pipeline_name: str, steps: dict | None = None, pars: bool = True) -> list[str]:
    """Reference types ``pipeline_name`` (image2 / image3) will request from CRDS.

    Read from the installed pipeline: the ``reference_file_types`` stpipe
    prefetches for every step that is not skipped (``steps`` takes the usual
    nested overrides, e.g. ``{"resample": {"skip": True}}``), plus, with
    ``pars``, the step-parameter references ``pars-<class name lowercased>``
    stpipe looks up for the pipeline and each of its steps.

    ``import jwst.pipeline`` costs ~3 s and ~250 MB, too much for a parent
    process that only plans and prefetches while its workers import jwst.  So
    what the answer is made of (each step's reftypes, default ``skip`` and
    ``prefetch_references``) is kept on disk in ``$XDG_CACHE_HOME/jwstrun/``,
    keyed by the jwst and stpipe versions and install paths
    (``JWSTRUN_NO_SPEC_CACHE`` turns the cache off).
    """
    key = (pipeline_name.lower(), json.dumps(steps or {}, sort_keys=True, default=str), pars)
    if key in _reftype_cache:
        return list(_reftype_cache[key])
    class_name = PIPELINES.get(pipeline_name.lower())
    if class_name is None:
        raise InputError(f"unknown pipeline {pipeline_name!r}: use one of image2, image3.")
    types = _reftypes_from_layout(_pipeline_layouts().get(class_name), steps, pars)
    if types is None:  # overrides the cached layout cannot answer: ask stpipe itself
        types = _reftypes_from_jwst(class_name, steps, pars)
    _reftype_cache[key] = types
    return list(types)


def _reftypes_from_jwst(class_name: str, steps: dict | None, pars: bool) -> list[str]:
    import jwst.pipeline

    cls = getattr(jwst.pipeline, class_name)
    pipeline = cls(steps=steps or {})
    types = list(dict.fromkeys(pipeline.reference_file_types))
    if pars:
        types.append(cls.get_config_reftype())
        types.extend(step_cls.get_config_reftype() for step_cls in cls.step_defs.values())
    return list(dict.fromkeys(t.lower() for t in types))


def _reftypes_from_layout(layout: dict | None, steps: dict | None, pars: bool) -> list[str] | None:
    """Same answer as :func:`_reftypes_from_jwst` from a cached layout, or None if unsure."""
    if layout is None:
        return None
    steps = steps or {}
    if not isinstance(steps, dict) or set(steps) - set(layout["steps"]):
        return None
    types: list[str] = []
    for name, info in layout["steps"].items():
        skip = (steps.get(name) or {}).get("skip", info["skip"])
        if not isinstance(skip, bool):  # "yes", 1...: stpipe's own coercion decides
            return None
        if not skip and info["prefetch_references"]:
            types.extend(info["reftypes"])
    types = list(dict.fromkeys(types))
    if pars:
        types.append(layout["config_reftype"])
        types.extend(info["config_reftype"] for info in layout["steps"].values())
    return list(dict.fromkeys(t.lower() for t in types))


def _reftype_cache_path() -> Path | None:
    return pipeline_cache_path("reftypes", str(_REFTYPE_CACHE_FORMAT))


def _layouts_from_jwst() -> dict[str, dict]:
    """What reftypes_for needs of each pipeline in PIPELINES, read from jwst (slow)."""
    import jwst.pipeline

    layouts = {}
    for class_name in sorted(set(PIPELINES.values())):
        cls = getattr(jwst.pipeline, class_name)
        pipeline = cls()
        layouts[class_name] = {
            "config_reftype": cls.get_config_reftype(),
            "steps": {
                name: {
                    "reftypes": list(getattr(pipeline, name).reference_file_types),
                    "skip": bool(getattr(pipeline, name).skip),
                    "prefetch_references": bool(getattr(pipeline, name).prefetch_references),
                    "config_reftype": step_cls.get_config_reftype(),
                }
                for name, step_cls in cls.step_defs.items()
            },
        }
    return layouts


_layouts: dict[str, dict] | None = None


def _pipeline_layouts() -> dict[str, dict]:
    """Layouts from the disk cache, or from jwst (then written to the cache)."""
    global _layouts
    if _layouts is None:
        _layouts = cached_json(
            _reftype_cache_path(), _layouts_from_jwst,
            lambda data: set(data) == set(PIPELINES.values()),
        )
    return _layouts


# ---------------------------------------------------------------------------
# Best references


@dataclass
class RefGroup:
    """Exposures that share every CRDS matching parameter (and UseAfter interval)."""

    instrument: str
    parameters: dict[str, str]
    exposures: list[str]
    pipelines: tuple[str, ...]
    dates: tuple[str, str]
    references: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Reference basenames this group needs (N/A excluded)."""
        return sorted({v for v in self.references.values() if v != "N/A"})

    @property
    def label(self) -> str:
        keys = ("DETECTOR", "FILTER", "PUPIL", "SUBARRAY", "EXP_TYPE")
        parts = [self.instrument] + [self.parameters[k] for k in keys if self.parameters.get(k)]
        return " ".join(parts)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["label"] = self.label
        data["n_exposures"] = len(self.exposures)
        data["dates"] = list(self.dates)
        data["pipelines"] = list(self.pipelines)
        return data


@dataclass
class Resolution:
    """Best references for a set of exposures under one context."""

    context: str
    crds_path: str
    groups: list[RefGroup]
    n_exposures: int
    n_crds_calls: int
    reftypes: dict[str, list[str]]

    @property
    def files(self) -> list[str]:
        return sorted({name for g in self.groups for name in g.files})

    @property
    def problems(self) -> list[str]:
        """One sentence per reftype a pipeline needs but crds cannot resolve."""
        out = []
        for group in self.groups:
            for reftype, message in sorted(group.errors.items()):
                out.append(
                    f"{group.exposures[0]}: no {reftype} reference under {self.context} "
                    f"({group.label}): {message}"
                )
        return out

    def unresolved(self) -> dict[str, str]:
        """{absolute exposure path: one sentence} for every exposure crds cannot serve."""
        out = {}
        for group in self.groups:
            by_message: dict[str, list[str]] = {}
            for reftype, message in sorted(group.errors.items()):
                by_message.setdefault(message, []).append(reftype)
            if by_message:
                reason = "; ".join(f"no {', '.join(types)} reference under {self.context} "
                                   f"({group.label}): {message}"
                                   for message, types in by_message.items())
                reason = (f"CRDS: {reason.rstrip('.')}. Check the exposure's header or pin "
                          "another context with --crds-context.")
                out.update((os.path.abspath(e), reason) for e in group.exposures)
        return out

    def references_for(self, exposure: str | os.PathLike) -> dict[str, str]:
        """The {reftype: basename or N/A} chosen for one exposure."""
        target = os.path.abspath(exposure)
        for group in self.groups:
            if target in (os.path.abspath(e) for e in group.exposures):
                return dict(group.references)
        raise KeyError(str(exposure))

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "crds_path": self.crds_path,
            "n_exposures": self.n_exposures,
            "n_groups": len(self.groups),
            "n_crds_calls": self.n_crds_calls,
            "reftypes": self.reftypes,
            "files": self.files,
            "problems": self.problems,
            "groups": [g.to_dict() for g in self.groups],
        }


@dataclass
class _KeyPlan:
    """For one instrument + reftype set: which keys to compare exactly, how to bucket dates."""

    exact: list[str]  # parkeys (META.X.Y) whose values must match exactly
    date_keys: list[str]  # parkeys only used by UseAfter selectors
    breakpoints: list[str]  # all UseAfter dates, reformatted, sorted
    known: set[str]  # reftypes the imap lists


_FITS_OVERRIDES = {
    "META.INSTRUMENT.NAME": "INSTRUME",
    "META.OBSERVATION.DATE": "DATE-OBS",
    "META.OBSERVATION.TIME": "TIME-OBS",
    "META.TELESCOPE": "TELESCOP",
}


_SCHEMA_CACHE_FORMAT = 1
_schema_locations: dict[str, list[str]] | None = None


def _locations_from_schema() -> dict[str, list[str]]:
    """{datamodel key: [FITS keyword, HDU]} for every key the core schema puts in FITS (slow:
    crds loads the schema through stdatamodels and asdf, about 4 s)."""
    from crds.jwst import schema

    flat = schema.get_flat_schema()
    suffix = ".FITS_KEYWORD"
    return {
        key[: -len(suffix)]: [str(value), str(flat.get(key[: -len(suffix)] + ".FITS_HDU", "PRIMARY")).upper()]
        for key, value in flat.items()
        if key.endswith(suffix)
    }


def _fits_location(parkey: str) -> tuple[str, str]:
    """(FITS keyword, HDU name) where the JWST datamodel schema keeps ``parkey``.

    The schema's locations are cached on disk per crds/stdatamodels install, so
    a run's parent process does not load the datamodel schemas (about 4 s).
    """
    global _schema_locations
    if _schema_locations is None:
        _schema_locations = cached_json(
            pipeline_cache_path("schema", str(_SCHEMA_CACHE_FORMAT), ("stdatamodels", "crds")),
            _locations_from_schema,
            lambda data: isinstance(data, dict) and "META.INSTRUMENT.NAME" in data,
        )
    keyword, hdu = _schema_locations.get(parkey, [None, "PRIMARY"])
    return _FITS_OVERRIDES.get(parkey) or keyword or parkey.rsplit(".", 1)[-1], hdu


def _fits_keyword(parkey: str) -> str:
    return _fits_location(parkey)[0]


def _useafter_dates(selector, dates: set) -> None:
    """Collect every UseAfter date of a selector tree (reformatted as crds compares them)."""
    from crds.core import selectors, timestamp

    if not isinstance(selector, selectors.Selector):
        return
    if isinstance(selector, selectors.UseAfterSelector):
        for key in selector.keys():
            with contextlib.suppress(Exception):
                dates.add(timestamp.reformat_date(key))
    for choice in selector.choices():
        _useafter_dates(choice, dates)


def _key_plan(pmap, instrument: str, reftypes: tuple[str, ...]) -> _KeyPlan:
    from crds.core import exceptions as crexc

    imap = pmap.get_imap(instrument)
    known = set(imap.selections.keys())
    exact: set[str] = {"META.INSTRUMENT.NAME"}
    dated: set[str] = set()
    dates: set[str] = set()
    for reftype in reftypes:
        if reftype not in known:
            continue
        try:
            rmap = imap.get_rmap(reftype)
        except (crexc.IrrelevantReferenceTypeError, crexc.OmitReferenceTypeError):
            continue
        required = {str(k).upper() for k in rmap.get_required_parkeys()}
        # parkey is one tuple per selector class (Match, UseAfter): only the keys that feed
        # UseAfter are bucketed by date, everything else must match exactly
        classes = tuple(rmap.header.get("classes", ("Match", "UseAfter")))
        levels = rmap.parkey if rmap.parkey and isinstance(rmap.parkey[0], tuple) else (rmap.parkey,)
        dated_here = {str(k).upper() for cls, keys in zip(classes, levels) if cls == "UseAfter"
                      for k in keys}
        exact_here = {str(k).upper() for cls, keys in zip(classes, levels) if cls != "UseAfter"
                      for k in keys}
        _useafter_dates(rmap.selector, dates)
        # rmap-level expressions (relevance, omit) may name further keys: compare them exactly
        for name in ("rmap_relevance", "rmap_omit", "parkey_relevance"):
            text = str(rmap.header.get(name, ""))
            required |= set(re.findall(r"META(?:\.[A-Z0-9_]+)+", text.upper()))
        dated_only = dated_here - exact_here
        exact |= required - dated_only
        dated |= dated_only
    exact -= {"REFTYPE"}
    dated -= exact
    return _KeyPlan(sorted(exact), sorted(dated), sorted(dates), known)


class _HeaderSource:
    """Values of CRDS parkeys for one input: a FITS file, a FITS-keyword dict, or crds parameters."""

    def __init__(self, item, index: int):
        from .products import product_type, read_primary_header

        self.ext_headers: dict = {}
        self.path = None
        if isinstance(item, (str, os.PathLike)):
            self.path = Path(item)
            self.label = str(item)
            self.primary = read_primary_header(self.path)
            self.meta = None
            self.product = product_type(self.path, self.primary)
        elif isinstance(item, dict) and any(str(k).upper().startswith("META.") for k in item):
            self.label = str(item.get("path", f"header[{index}]"))
            self.meta = {str(k).upper(): v for k, v in item.items()}
            self.primary = None
            self.product = item.get("product_type")
        elif hasattr(item, "get") and hasattr(item, "keys"):
            self.label = str(item.get("path", f"header[{index}]")) if isinstance(item, dict) else f"header[{index}]"
            self.primary = item
            self.meta = None
            self.product = product_type(self.label, item) if isinstance(item, dict) else None
        else:
            raise InputError(f"cannot read CRDS parameters from {item!r}: give a FITS path or a header.")

    def get(self, parkey: str):
        if self.meta is not None:
            return self.meta.get(parkey, "UNDEFINED")
        keyword, hdu = _fits_location(parkey)
        if keyword in self.primary:
            return self.primary[keyword]
        if hdu != "PRIMARY" and self.path is not None:
            # a few model keys (none of the usual imaging ones) live in the SCI header
            if hdu not in self.ext_headers:
                from astropy.io import fits

                try:
                    self.ext_headers[hdu] = fits.getheader(self.path, hdu)
                except Exception:  # noqa: BLE001 - no such extension: the key is undefined
                    self.ext_headers[hdu] = {}
            if keyword in self.ext_headers[hdu]:
                return self.ext_headers[hdu][keyword]
        return "UNDEFINED"

    @property
    def instrument(self) -> str:
        value = self.get("META.INSTRUMENT.NAME")
        if not value or value == "UNDEFINED":
            raise InputError(f"{self.label}: no INSTRUME keyword, so CRDS cannot select references. "
                             "Is this a JWST product?")
        return str(value).strip().upper()


def _value(value) -> str | int | float | bool:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, int, float)):
        return value
    return str(value)


def resolve_bestrefs(
    exposures,
    context: str | None = None,
    reftypes=None,
    pipelines=None,
    steps: dict | None = None,
) -> Resolution:
    """Best references for ``exposures`` with one crds call per group of equivalent inputs.

    Parameters
    ----------
    exposures : iterable
        Paths (files, globs or association JSON), FITS headers, or dicts of crds
        parameters (``META.*`` keys).
    context : str, optional
        A .pmap to pin; default :func:`context_in_use`.
    reftypes : list of str, optional
        Reference types to resolve for every input.  Default: those of
        ``pipelines`` (:func:`reftypes_for`), including ``pars-*`` types.
    pipelines : tuple of str, optional
        Default per input: rate files -> image2 and image3; cal/crf -> image3.
    steps : dict, optional
        Step overrides (``{"resample": {"skip": True}}``) used to derive reftypes.
    """
    import crds

    items = list(exposures)
    if items and all(isinstance(i, (str, os.PathLike)) for i in items):
        items = [str(p) for p in expand_inputs(items)]
    if not items:
        raise InputError("no exposures given.")
    ctx = context_in_use(context)
    pmap = _load_context(ctx)
    types_by_pipeline: dict[str, list[str]] = {}

    def types_for(pipes: tuple[str, ...]) -> tuple[str, ...]:
        if reftypes is not None:
            return tuple(dict.fromkeys(t.lower() for t in reftypes))
        out: list[str] = []
        for name in pipes:
            if name not in types_by_pipeline:
                types_by_pipeline[name] = reftypes_for(name, steps=steps)
            out.extend(types_by_pipeline[name])
        return tuple(dict.fromkeys(out))

    plans: dict[tuple, _KeyPlan] = {}
    groups: dict[tuple, RefGroup] = {}
    representatives: dict[tuple, dict] = {}
    group_types: dict[tuple, tuple[str, ...]] = {}
    from crds.core import timestamp

    for index, item in enumerate(items):
        source = _HeaderSource(item, index)
        instrument = source.instrument
        pipes = tuple(pipelines) if pipelines else _PIPELINES_FOR_PRODUCT.get(
            source.product or "", ("image2", "image3"))
        types = types_for(pipes)
        plan_key = (instrument, types)
        if plan_key not in plans:
            try:
                plans[plan_key] = _key_plan(pmap, instrument, types)
            except crds.CrdsError as exc:
                raise CrdsError(f"{source.label}: context {ctx} has no rules for instrument "
                                f"{instrument} ({exc}). Pin another context with --crds-context.") from exc
        plan = plans[plan_key]
        exact_values = tuple((k, _value(source.get(k))) for k in plan.exact)
        date_values = tuple(str(_value(source.get(k))) for k in plan.date_keys)
        raw_date = " ".join(date_values)
        try:
            bucket: object = bisect.bisect_right(plan.breakpoints, timestamp.reformat_date(raw_date)) \
                if plan.date_keys else 0
        except Exception:  # noqa: BLE001 - unparsable date: let crds judge this input on its own
            bucket = ("raw", raw_date)
        key = (plan_key, exact_values, bucket)
        if key not in groups:
            params = {_fits_keyword(k): str(v) for k, v in exact_values if k != "META.INSTRUMENT.NAME"}
            groups[key] = RefGroup(instrument=instrument, parameters=params, exposures=[],
                                   pipelines=pipes, dates=(raw_date, raw_date))
            header = dict(exact_values)
            header.update(zip(plan.date_keys, date_values))
            representatives[key] = header
            group_types[key] = types
        group = groups[key]
        group.exposures.append(source.label)
        group.pipelines = tuple(dict.fromkeys(group.pipelines + pipes))
        if raw_date:
            group.dates = (min(group.dates[0], raw_date), max(group.dates[1], raw_date))

    n_calls = 0
    for key, group in groups.items():
        plan = plans[key[0]]
        types = group_types[key]
        known = [t for t in types if t in plan.known]
        with _quiet_crds():
            try:
                best = crds.getrecommendations(representatives[key], reftypes=known, context=ctx,
                                               observatory=OBSERVATORY) if known else {}
            except Exception as exc:  # noqa: BLE001
                raise CrdsError(f"{group.exposures[0]}: crds could not compute best references "
                                f"under {ctx}: {exc}") from exc
        n_calls += 1
        for reftype in types:
            if reftype not in plan.known:
                # an unlisted pars-* type only means "no parameter file": stpipe uses the
                # step's defaults; any other type makes stpipe's prefetch raise
                group.references[reftype] = "N/A"
                if not reftype.startswith("pars-"):
                    group.errors[reftype] = (f"reftype {reftype!r} is not listed in "
                                             f"{pmap.get_imap(group.instrument).basename}; the "
                                             "pipeline's prefetch will fail")
                continue
            value = best.get(reftype)
            if value is None:  # OMIT
                group.references[reftype] = "N/A"
            elif isinstance(value, str) and value.upper().startswith("NOT FOUND"):
                group.references[reftype] = "N/A"
                if "n/a" not in value.lower():
                    group.errors[reftype] = value[len("NOT FOUND"):].strip()
            else:
                group.references[reftype] = os.path.basename(str(value))
    ordered = sorted(groups.values(), key=lambda g: (g.label, g.dates))
    log.debug("resolved %d exposures in %d groups with %d crds calls", len(items), len(ordered), n_calls)
    return Resolution(
        context=ctx,
        crds_path=_crds_path(),
        groups=ordered,
        n_exposures=len(items),
        n_crds_calls=n_calls,
        reftypes={name: list(types) for name, types in types_by_pipeline.items()},
    )


# ---------------------------------------------------------------------------
# Prefetch


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


def _env_value(name: str) -> str | None:
    """An environment setting, with crds' exported "None" placeholder read as unset."""
    value = os.environ.get(name)
    return None if value in (None, "", "None", "none") else value


def _download_source() -> tuple[bool, str]:
    """Whether crds can download now, and from where."""
    mirror = _env_value("CRDS_REFERENCE_URI") or _env_value("CRDS_MAPPING_URI")
    if mirror:
        return True, f"mirror {redact_url(mirror)}"
    url = os.environ.get("CRDS_SERVER_URL")
    reachable, detail = server_reachable(url)
    return reachable, (redact_url(url) or "no server") + ("" if reachable else f" ({detail})")


def _offline_advice() -> str:
    return ("run `jwstrun refs prefetch` with the same inputs on a node with network, or set "
            "CRDS_PATH to a synced cache")


def prefetch(inputs, context: str | None = None, pipelines=("image2", "image3"),
             steps: dict | None = None, per_exposure: bool = False) -> PrefetchReport:
    """Put every mapping and reference ``inputs`` need for ``pipelines`` into CRDS_PATH.

    Uses crds' own downloader (``crds.client.api``: atomic per-file writes with
    its per-file lock and checksum verification).  Step-parameter (``pars-*``)
    references are included.  Afterwards the same inputs run with the network
    gone (pin the returned context, see :func:`worker_environment`).

    Raises :class:`CrdsError` naming the missing files, their reftype and the
    input when the cache lacks something and no server or mirror can be reached,
    and when crds has no reference for an input -- unless ``per_exposure``: then
    such inputs are left out and listed in ``report.unresolved`` (a run fails
    only their tasks).
    """
    from crds.core import config, heavy_client

    crds_path = _crds_path()
    can_download, source = _download_source()
    ctx = context_in_use(context)
    files: list[FetchedFile] = []

    if config.get_cache_readonly():
        log.info("CRDS_READONLY_CACHE is set: prefetch will only check the cache")
    # 1. mappings of the context: walk pmap -> imaps -> rmaps, fetching what is missing.
    # (crds' dump_mappings asks the server for the closure; walking the files also works
    # with a mirror given by CRDS_MAPPING_URI.)
    mapping_status: dict[str, str] = {}
    queue = [ctx]
    while queue:
        name = queue.pop()
        if name in mapping_status:
            continue
        path = Path(config.locate_mapping(name, OBSERVATORY))
        if path.exists():
            mapping_status[name] = "present"
        else:
            if not can_download:
                raise CrdsError(
                    f"{path}: mapping {name} of context {ctx} is not in the CRDS cache and the "
                    f"CRDS server cannot be reached ({source}). To fix: {_offline_advice()}."
                )
            from crds.client import api

            with _quiet_crds():
                try:
                    api.FileCacher(ctx, raise_exceptions=True).get_local_files([name])
                except Exception as exc:  # noqa: BLE001 - crds download errors
                    raise CrdsError(f"could not download mapping {name} from {source}: {exc}. "
                                    f"To fix: {_offline_advice()}.") from exc
            if not path.exists():
                raise CrdsError(f"{path}: mapping {name} was not written by the download "
                                "(is CRDS_READONLY_CACHE set?). Unset CRDS_READONLY_CACHE for the "
                                "prefetch and check that CRDS_PATH is writable.")
            mapping_status[name] = "fetched"
        if not name.endswith(".rmap"):
            text = path.read_text()
            body = text[text.find("selector"):]
            queue.extend(re.findall(r"['\"](jwst_[a-z0-9_\-]+\.[ir]map)['\"]", body))
    _load_context(ctx)  # the whole closure is present and checksums are right
    for name, status in sorted(mapping_status.items()):
        path = Path(config.locate_mapping(name, OBSERVATORY))
        files.append(FetchedFile(name, "mapping", status, path.stat().st_size))

    # 2. server_config: without it crds refuses to run offline later
    cfg = Path(crds_path) / "config" / OBSERVATORY / "server_config"
    if not cfg.is_file():
        with _quiet_crds():
            info = heavy_client.get_config_info(OBSERVATORY)
            heavy_client.cache_server_info(info, OBSERVATORY)
        if not cfg.is_file():
            raise CrdsError(f"{cfg}: could not write the CRDS configuration; check that CRDS_PATH "
                            "is writable.")

    # 3. references
    resolution = resolve_bestrefs(inputs, context=ctx, pipelines=pipelines if pipelines else None,
                                  steps=steps)
    if resolution.problems and not per_exposure:
        raise CrdsError("CRDS cannot resolve every reference the pipelines need:\n  "
                        + "\n  ".join(resolution.problems)
                        + f"\nPin another context with --crds-context or fix the rules in {crds_path}.")
    wanted: dict[str, dict] = {}
    for group in resolution.groups:
        for reftype, name in group.references.items():
            if name == "N/A" or group.errors:
                continue
            entry = wanted.setdefault(name, {"instrument": group.instrument, "reftypes": set(),
                                             "exposure": group.exposures[0]})
            entry["reftypes"].add(reftype)
    missing: dict[str, list[str]] = {}
    for name, entry in sorted(wanted.items()):
        path = Path(config.locate_file(name, OBSERVATORY,
                                       parameters={"META.INSTRUMENT.NAME": entry["instrument"]}))
        entry["path"] = path
        if not path.exists():
            missing.setdefault(entry["instrument"], []).append(name)
    n_missing = sum(len(v) for v in missing.values())
    if n_missing and config.get_cache_readonly():
        raise CrdsError(f"{n_missing} reference files are missing from {crds_path} but "
                        "CRDS_READONLY_CACHE is set; unset it for the prefetch.")
    if n_missing and not can_download:
        lines = [f"{name} ({', '.join(sorted(wanted[name]['reftypes']))}; needed by "
                 f"{wanted[name]['exposure']})" for names in missing.values() for name in names]
        raise CrdsError(
            f"{n_missing} reference file(s) are not in the CRDS cache {crds_path} and the CRDS "
            f"server cannot be reached ({source}):\n  " + "\n  ".join(lines)
            + f"\nTo fix: {_offline_advice()}."
        )
    fetched_names: set[str] = set()
    if n_missing:
        from crds.client import api

        for instrument, names in missing.items():
            cacher = api.FileCacher(ctx, ignore_cache=False, raise_exceptions=True,
                                    parameters={"META.INSTRUMENT.NAME": instrument})
            log.info("fetching %d %s reference files from %s", len(names), instrument, source)
            with _quiet_crds():
                try:
                    cacher.get_local_files(list(names))
                except Exception as exc:  # noqa: BLE001 - crds download errors
                    raise CrdsError(f"downloading {instrument} references from {source} failed: "
                                    f"{exc}. Re-run `jwstrun refs prefetch` (finished files are "
                                    "kept) or " + _offline_advice() + ".") from exc
            fetched_names.update(names)
    for name, entry in sorted(wanted.items()):
        path = entry["path"]
        if not path.exists():
            raise CrdsError(f"{name}: still missing from {path} after the download; another "
                            "process may be fetching it. Re-run `jwstrun refs prefetch`.")
        files.append(FetchedFile(name, "reference", "fetched" if name in fetched_names else "present",
                                 path.stat().st_size, sorted(entry["reftypes"])))
    return PrefetchReport(context=ctx, crds_path=crds_path, files=files, resolution=resolution,
                          source=source, unresolved=resolution.unresolved())


# ---------------------------------------------------------------------------
# Doctor


def filesystem_of(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> tuple[str, str]:
    """(fstype, mount point) of the filesystem holding ``path`` (its nearest existing parent)."""
    # realpath resolves symlinks of the existing part; a not-yet-created cache still
    # belongs to the mount its path falls under
    real = os.path.realpath(Path(path).expanduser())
    best = ("unknown", "/")
    best_len = -1
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > best_len:
            best, best_len = (parts[2], mount), len(mount)
    return best


def _storage_kind(fstype: str) -> str:
    if fstype in _SHARED_FS or fstype.startswith(("nfs", "fuse.lustre")):
        return "shared"
    if fstype in _LOCAL_FS:
        return "local"
    return "unknown"


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return files, size


@dataclass
class DoctorReport:
    """CRDS set-up as a jwstrun process sees it, with advice per problem."""

    crds_path: str | None
    server_url: str | None
    context_env: str | None
    readonly: bool
    serverless: bool
    reachable: bool
    reachable_detail: str
    probe_seconds: float
    cache_exists: bool
    cache_files: int
    cache_bytes: int
    contexts_in_cache: list[str]
    context: str | None
    filesystem: str
    mount_point: str
    storage: str
    coverage: dict | None = None
    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def doctor(inputs=None, context: str | None = None) -> DoctorReport:
    """Check the CRDS configuration (and, with ``inputs``, whether the cache covers them).

    Never waits on the network longer than the short probe; problems come with
    plain-words advice in ``report.problems`` ([{"problem", "advice"}]).
    """
    env = os.environ
    crds_path = env.get("CRDS_PATH")
    url = env.get("CRDS_SERVER_URL")
    problems: list[dict] = []
    notes: list[str] = []

    def problem(text: str, advice: str) -> None:
        problems.append({"problem": text, "advice": advice})

    start = time.monotonic()
    reachable, detail = server_reachable(url)
    probe_seconds = time.monotonic() - start
    serverless = is_serverless(url)
    cache = Path(crds_path) if crds_path else None
    exists = bool(cache and cache.is_dir())
    n_files = n_bytes = 0
    contexts: list[str] = []
    if exists:
        n_files, n_bytes = _tree_size(cache)
        contexts = sorted(p.name for p in (cache / "mappings" / OBSERVATORY).glob("jwst_*.pmap"))
    fstype, mount = filesystem_of(crds_path or os.path.expanduser("~"))
    storage = _storage_kind(fstype)

    if not crds_path:
        problem("CRDS_PATH is not set, so crds would use its built-in default location.",
                "Set CRDS_PATH to your CRDS cache directory (export CRDS_PATH=/path/to/crds_cache) "
                "or pass --crds-path.")
    elif not exists:
        problem(f"CRDS_PATH {crds_path} does not exist.",
                "Create it and run `jwstrun refs prefetch INPUTS` on a node with network, or point "
                "CRDS_PATH at an existing cache.")
    elif not (cache / "config" / OBSERVATORY / "server_config").is_file():
        problem(f"{cache}/config/jwst/server_config is missing; crds cannot work offline without it.",
                "Run `jwstrun refs prefetch INPUTS` once on a node with network (it writes the file).")
    if not url:
        notes.append("CRDS_SERVER_URL is not set; crds then runs in serverless mode.")
    elif not serverless and not reachable:
        problem(f"The CRDS server {redact_url(url)} does not answer ({detail}).",
                "Work from the local cache: pass --offline or set CRDS_SERVER_URL="
                f"{SERVERLESS_URL} so crds never waits on the network (its default timeout is one "
                "hour per request). Fetch missing files where there is network with "
                "`jwstrun refs prefetch`.")
    if exists and storage == "local":
        if fstype in ("tmpfs", "ramfs"):
            notes.append(f"CRDS_PATH is on {fstype} ({mount}): the cache is lost at reboot and "
                         "other nodes cannot see it.")
        else:
            notes.append(f"CRDS_PATH is on local storage ({fstype} at {mount}). Fine on one machine; "
                         "on a cluster put the cache on shared storage (NFS/Lustre/GPFS) so every "
                         "compute node sees the same files, and prefetch once from a login node.")
    elif exists and storage == "shared":
        notes.append(f"CRDS_PATH is on shared storage ({fstype} at {mount}): compute nodes can use "
                     "it; let workers run with CRDS_READONLY_CACHE=1 after a prefetch.")
    if env.get("CRDS_READONLY_CACHE", "").lower() in ("1", "true", "yes", "t"):
        notes.append("CRDS_READONLY_CACHE is set: nothing will be downloaded into the cache.")

    ctx_name = None
    coverage = None
    if exists and not any("server_config" in p["problem"] for p in problems):
        try:
            ctx_name = context_in_use(context)
            if ctx_name not in contexts:
                problem(f"The context in use, {ctx_name}, is not in the cache.",
                        "Run `jwstrun refs prefetch` on a node with network, or pin one of "
                        f"{', '.join(contexts) or 'the cached contexts'} with --crds-context.")
        except CrdsError as exc:
            problem(str(exc), "Fix the cache configuration first (see above).")
    if inputs and ctx_name and ctx_name in contexts:
        from crds.core import config

        try:
            resolution = resolve_bestrefs(inputs, context=ctx_name)
        except CrdsError as exc:
            problem(str(exc), "Check the inputs and the context.")
        else:
            missing = []
            for name in resolution.files:
                instrument = next(g.instrument for g in resolution.groups if name in g.files)
                path = Path(config.locate_file(name, OBSERVATORY,
                                               parameters={"META.INSTRUMENT.NAME": instrument}))
                if not path.exists():
                    missing.append(name)
            coverage = {"n_exposures": resolution.n_exposures, "n_groups": len(resolution.groups),
                        "needed": len(resolution.files), "missing": missing,
                        "unresolved": resolution.problems}
            if missing:
                problem(f"{len(missing)} of {len(resolution.files)} reference files the inputs need "
                        f"are not in the cache (e.g. {missing[0]}).",
                        "Run `jwstrun refs prefetch` with the same inputs on a node with network, "
                        "or set CRDS_PATH to a synced cache.")
            for text in resolution.problems:
                problem(text, "Pin another context with --crds-context or fix the CRDS rules.")
    return DoctorReport(
        crds_path=crds_path, server_url=redact_url(url), context_env=env.get("CRDS_CONTEXT"),
        readonly=env.get("CRDS_READONLY_CACHE", "").lower() in ("1", "true", "yes", "t"),
        serverless=serverless, reachable=reachable, reachable_detail=detail,
        probe_seconds=round(probe_seconds, 3), cache_exists=exists, cache_files=n_files,
        cache_bytes=n_bytes, contexts_in_cache=contexts, context=ctx_name, filesystem=fstype,
        mount_point=mount, storage=storage, coverage=coverage, problems=problems, notes=notes,
    )
