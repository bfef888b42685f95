"""The CRDS_* rules: which variables a jwstrun process runs with, read and checked
without importing crds.

crds reads ``CRDS_SERVER_URL`` when it is imported and caches the server
configuration and context per process, so a process settles its variables
here *before* anything imports crds (or jwst/stpipe, which import it).  This
module is the one home of the serverless URL and of the context-name rule
(``jwst_NNNN.pmap``); the simulator's cache writer and the tests import them
from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from .._io import atomic_write
from ..errors import CrdsError, InputError, OutputError

__all__ = [
    "OBSERVATORY",
    "SERVERLESS_URL",
    "CONTEXT_NAME",
    "SYMBOLIC_CONTEXTS",
    "UNREACHABLE_TIMEOUT_SECONDS",
    "PROBE_TIMEOUT_SECONDS",
    "is_context_name",
    "check_context_name",
    "read_env_file",
    "write_env_file",
    "redact_url",
    "is_serverless",
    "server_reachable",
    "crds_environment",
    "apply_crds_environment",
    "applied_crds_environment",
    "worker_environment",
    "clear_probe_cache",
]

log = logging.getLogger(__name__)

OBSERVATORY = "jwst"
#: Any CRDS_SERVER_URL containing "serverless" makes crds skip every network call.
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"
#: The name of a JWST pipeline context (a ``.pmap``): ``jwst_NNNN.pmap``.
CONTEXT_NAME = re.compile(r"jwst_\d{4}\.pmap")
#: Names crds resolves to a context itself; accepted when pinning one, never written.
SYMBOLIC_CONTEXTS = ("jwst-latest", "jwst-operational", "latest")
#: Seconds crds may wait on a server that does not answer (its default is 3600).
UNREACHABLE_TIMEOUT_SECONDS = "5"
#: Seconds the reachability probe waits (connect only, DNS included).
PROBE_TIMEOUT_SECONDS = 3.0

#: CRDS variables jwstrun sets or clears.  crds exports its own settings' defaults into
#: os.environ when imported and reads them back later, so after import a managed
#: variable is reset to crds' default string rather than deleted.
MANAGED = {
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


# ---------------------------------------------------------------------------
# Names and values


def is_context_name(name: str) -> bool:
    """True for a concrete JWST pipeline context name (``jwst_1322.pmap``)."""
    return bool(CONTEXT_NAME.fullmatch(str(name)))


def check_context_name(context: str) -> str:
    """``context`` stripped, if it names a context to pin (``jwst_NNNN.pmap`` or a
    symbolic name crds resolves); :class:`InputError` otherwise."""
    name = str(context).strip()
    if not is_context_name(name) and name not in SYMBOLIC_CONTEXTS:
        raise InputError(
            f"--crds-context {context!r}: expected a JWST pipeline context name such as "
            "jwst_1322.pmap (see `jwstrun refs doctor` for the contexts in your cache)."
        )
    return name


def env_value(name: str) -> str | None:
    """An environment setting, with crds' exported "None" placeholder read as unset."""
    value = os.environ.get(name)
    return None if value in (None, "", "None", "none") else value


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """Read ``export NAME=value`` lines (as written by ``jwstrun simulate``) into a dict.

    Relative ``CRDS_PATH`` values are taken relative to the file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: CRDS environment file not found. Give a file written by "
                         "`jwstrun refs prefetch --write-env FILE` or `jwstrun simulate OUTDIR`, "
                         "or use --crds-path.")
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


def write_env_file(path: str | os.PathLike, env: dict[str, str], comment: str = "") -> Path:
    """Write ``env`` as ``export NAME=value`` lines (shell-quoted) that :func:`read_env_file`
    and a shell's ``source`` read; ``comment`` becomes ``#`` lines at the top.  Atomic."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError(f"{path}: invalid environment variable name {name!r}.")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    try:
        return atomic_write(Path(path), "\n".join(lines) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the CRDS environment file "
                          f"({exc.strerror or exc}). Give a path in a writable directory.") from exc


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


# ---------------------------------------------------------------------------
# Server probe

#: URL -> (reachable, detail): one probe per URL and process.  Cleared by
#: :func:`clear_probe_cache` (and ``jwstrun.refs.clear_caches``), e.g. in a
#: notebook after the network came back.
_probe_results: dict[str, tuple[bool, str]] = {}


def clear_probe_cache() -> None:
    """Forget the remembered answers of :func:`server_reachable`."""
    _probe_results.clear()


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
    if url in _probe_results:
        return _probe_results[url]
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
    _probe_results[url] = result
    return result


# ---------------------------------------------------------------------------
# The environment of a process


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
    if env.get("CRDS_CLIENT_TIMEOUT_SECONDS") == MANAGED["CRDS_CLIENT_TIMEOUT_SECONDS"]:
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
        env["CRDS_CONTEXT"] = check_context_name(context)
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


def apply_crds_environment(env: dict[str, str]) -> dict[str, str]:
    """Make ``env`` (from :func:`crds_environment`) the process's CRDS configuration.

    Sets the ``CRDS_*`` variables of ``env`` in ``os.environ`` and clears the
    location/server/context variables ``env`` does not name.  Call it before crds,
    stpipe or jwst are imported.  If crds is already imported, its cached server
    URL, configuration and context are reset through crds' public configuration
    functions (``jwstrun.refs._crds.resync``).

    Returns the ``CRDS_*`` variables as they were before; a library call that
    should not change its caller's settings uses :func:`applied_crds_environment`.
    """
    from . import _crds

    env = {k: str(v) for k, v in env.items() if k.startswith("CRDS_")}
    previous = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    _crds.clear_context_cache()
    if "crds" not in sys.modules:
        for key in MANAGED:
            if key not in env:
                os.environ.pop(key, None)
        os.environ.update(env)
        return previous
    settings = dict(previous)
    for key, default in MANAGED.items():
        if key in env:
            continue
        if default is None:
            settings.pop(key, None)
        else:
            settings[key] = default
    settings.update(env)
    _crds.resync(settings)
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
            if key.startswith("CRDS_") and key not in previous and key not in MANAGED:
                os.environ.pop(key, None)
        apply_crds_environment(previous)


def worker_environment(env: dict[str, str], context: str | None) -> dict[str, str]:
    """Variables for pipeline workers after a successful prefetch.

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
    worker["CRDS_CLIENT_TIMEOUT_SECONDS"] = MANAGED["CRDS_CLIENT_TIMEOUT_SECONDS"]
    return worker
