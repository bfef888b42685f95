"""What a CRDS environment amounts to, and what to tell a user it lacks.

Read from the ``CRDS_*`` variables and the cache on disk, without importing
crds.  Two questions matter before crds is asked anything:

- is there a cache crds can work from alone (``config/jwst/server_config``, written by
  the first contact with a server or by ``jwstrun refs prefetch``): *filled*;
- is there a server that can fill it: a real ``CRDS_SERVER_URL`` that answers.

"Offline on purpose" is a serverless (or unset) ``CRDS_SERVER_URL`` with a filled
``CRDS_PATH``; "forgot to configure" is no ``CRDS_PATH`` and no server.  When crds has
nothing to work from, :func:`setup_problem` names the case and gives advice for the
command at hand: ``purpose="fetch"`` (``refs prefetch``/``bestrefs``: reach the
server) or ``purpose="run"`` (image2/image3: prefetch first, or use a filled cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import CrdsError
from .env import OBSERVATORY, is_serverless, redact_url, server_reachable

__all__ = [
    "JWST_SERVER_URL",
    "DEFAULT_CACHE",
    "EXAMPLE_CACHE",
    "CrdsSetup",
    "crds_setup",
    "fallback_text",
    "setup_problem",
    "check_setup",
    "offline_advice",
]

#: The JWST CRDS server.
JWST_SERVER_URL = "https://jwst-crds.stsci.edu"
#: Where crds keeps its files when CRDS_PATH is not set (CRDS_DEFAULT_CACHE overrides it):
#: STScI's internal cache, which does not exist anywhere else.
DEFAULT_CACHE = "/grp/crds/cache"
#: The CRDS_PATH messages suggest (crds creates the directory).
EXAMPLE_CACHE = "$HOME/crds_cache"
#: Variables that place crds' files without CRDS_PATH (expert layouts: taken as configured).
_OTHER_LOCATIONS = ("CRDS_PATH_SINGLE", "CRDS_CFGPATH", "CRDS_MAPPATH", "CRDS_REFPATH")

_USE_FILLED = "use a filled cache: --crds-env FILE, --crds-path DIR or export CRDS_PATH=DIR"
_CREATES = "(any directory; crds creates it)"


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value in (None, "", "None", "none") else value


@dataclass(frozen=True)
class CrdsSetup:
    """The CRDS set-up a process would run with (see :func:`crds_setup`)."""

    #: CRDS_PATH as set; None when it is not set
    crds_path: str | None
    #: the cache crds uses: CRDS_PATH, or crds' fallback (:data:`DEFAULT_CACHE`)
    cache: str
    #: CRDS_SERVER_URL; None when it is not set (crds then uses no server)
    url: str | None
    #: a download source other than the server (CRDS_CONFIG_URI)
    mirror: str | None
    cache_exists: bool
    #: the cache has config/jwst/server_config: crds can work from it without a server
    filled: bool
    #: CRDS_PATH is not set but another CRDS_*PATH variable places the files
    other_location: bool = False

    @property
    def serverless(self) -> bool:
        """True when crds will not contact a server (unset URL: crds' own default)."""
        return self.url is None or is_serverless(self.url)

    @property
    def mode(self) -> str:
        """"online" (a server to fetch from), "offline" (a cache, no server) or
        "not-configured" (neither)."""
        if not self.serverless:
            return "online"
        has_cache = self.crds_path is not None or self.filled or self.other_location
        return "offline" if has_cache else "not-configured"

    def cache_state(self) -> str:
        """How an unfilled cache looks, for messages."""
        if not self.cache_exists:
            return "does not exist yet"
        try:
            with os.scandir(Path(self.cache).expanduser()) as entries:
                if next(entries, None) is None:
                    return "is empty"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        return f"has no config/{OBSERVATORY}/server_config (crds never filled it)"


def crds_setup(env: Mapping[str, str] | None = None) -> CrdsSetup:
    """The set-up of ``env`` (default ``os.environ``), e.g. the result of
    :func:`jwstrun.refs.crds_environment`; never imports crds."""
    env = os.environ if env is None else env
    crds_path = _value(env, "CRDS_PATH")
    cache = crds_path or _value(env, "CRDS_DEFAULT_CACHE") or DEFAULT_CACHE
    root = Path(cache).expanduser()
    return CrdsSetup(
        crds_path=crds_path, cache=cache, url=_value(env, "CRDS_SERVER_URL"),
        mirror=_value(env, "CRDS_CONFIG_URI"), cache_exists=root.is_dir(),
        filled=(root / "config" / OBSERVATORY / "server_config").is_file(),
        other_location=crds_path is None and any(_value(env, k) for k in _OTHER_LOCATIONS),
    )


def fallback_text(cache: str) -> str:
    """What crds does without CRDS_PATH: "crds would fall back to /grp/crds/cache, an
    STScI-internal path"."""
    return f"crds would fall back to {cache}" + (", an STScI-internal path"
                                                 if cache == DEFAULT_CACHE else "")


def _no_cache_path(setup: CrdsSetup, purpose: str) -> tuple[str, str, str]:
    if setup.serverless:
        server = ("CRDS_SERVER_URL is not set" if setup.url is None else
                  "CRDS_SERVER_URL is in serverless mode")
        problem = (f"CRDS is not configured: CRDS_PATH is not set ({fallback_text(setup.cache)}) "
                   f"and {server}.")
        export = f"export CRDS_SERVER_URL={JWST_SERVER_URL} CRDS_PATH={EXAMPLE_CACHE} {_CREATES}"
        status, fetch_what = "not-configured", "To use the JWST CRDS server: "
    else:
        problem = ("CRDS_SERVER_URL is set but CRDS_PATH is not, so crds has nowhere to keep "
                   f"reference files ({fallback_text(setup.cache)}).")
        export = f"export CRDS_PATH={EXAMPLE_CACHE} {_CREATES}"
        status, fetch_what = "no-cache-path", "Set a directory for them: "
    if purpose == "fetch":
        return status, problem, f"{fetch_what}{export}, then run this command again."
    return status, problem, (f"Either fetch the references first: {export}, then "
                             f"`jwstrun refs prefetch INPUTS`; or {_USE_FILLED}.")


def _unfilled(setup: CrdsSetup, purpose: str, detail: str) -> tuple[str, str, str]:
    cache = f"The CRDS cache {setup.cache} {setup.cache_state()}"
    if setup.serverless:
        problem = (f"{cache} and crds is offline (no CRDS server: --offline, --crds-path "
                   "without CRDS_SERVER_URL, or a serverless CRDS_SERVER_URL), so nothing can "
                   "be fetched into it.")
        if purpose == "fetch":
            advice = (f"To fill it from the JWST CRDS server: export CRDS_SERVER_URL="
                      f"{JWST_SERVER_URL} and run this command again without --offline; or "
                      f"{_USE_FILLED}.")
        else:
            advice = (f"Either fill it first: export CRDS_SERVER_URL={JWST_SERVER_URL}, then "
                      "`jwstrun refs prefetch INPUTS` with the same CRDS_PATH on a node with "
                      f"network; or {_USE_FILLED}.")
        return "empty-offline", problem, advice
    problem = f"{cache} and the CRDS server {redact_url(setup.url)} does not answer ({detail})."
    if purpose == "fetch":
        advice = ("Run this command where the server answers (e.g. a login node; check a "
                  f"proxy or VPN); or {_USE_FILLED}.")
    else:
        advice = ("Either fill it first where the server answers (a login node; or check the "
                  "URL, a proxy or a VPN here): `jwstrun refs prefetch INPUTS` with the same "
                  f"CRDS_PATH, on storage this node sees; or {_USE_FILLED}.")
    return "empty-unreachable", problem, advice


def setup_problem(setup: CrdsSetup, purpose: str = "fetch") -> tuple[str, str, str] | None:
    """``(status, problem, advice)`` when crds has nothing to work from, else None.

    None when the cache is filled, or when a server (or a CRDS_CONFIG_URI mirror) can fill
    it.  Statuses: ``not-configured`` (no CRDS_PATH, no server), ``no-cache-path`` (a
    server but no CRDS_PATH), ``empty-offline`` (an unfilled cache and no server),
    ``empty-unreachable`` (an unfilled cache and a server that does not answer a short
    probe).  ``purpose`` is "fetch" (refs prefetch/bestrefs) or "run" (image2/image3).
    """
    if setup.filled or setup.other_location:
        return None
    if setup.crds_path is None:
        return _no_cache_path(setup, purpose)
    if setup.mirror:
        return None
    if setup.serverless:
        return _unfilled(setup, purpose, "")
    reachable, detail = server_reachable(setup.url)
    return None if reachable else _unfilled(setup, purpose, detail)


def check_setup(env: Mapping[str, str] | None = None, purpose: str = "fetch") -> CrdsSetup:
    """The set-up of ``env``; :class:`CrdsError` (problem and advice) when crds has nothing
    to work from (:func:`setup_problem`)."""
    setup = crds_setup(env)
    found = setup_problem(setup, purpose)
    if found:
        raise CrdsError(f"{found[1]} {found[2]}")
    return setup


def offline_advice(purpose: str = "run", serverless: bool = False) -> str:
    """What to do when the cache lacks a file and no server can send it."""
    if purpose == "run":
        return ("run `jwstrun refs prefetch` with the same inputs and CRDS_SERVER_URL="
                f"{JWST_SERVER_URL} on a node with network, or set CRDS_PATH to a cache that "
                "has them")
    if serverless:
        return (f"export CRDS_SERVER_URL={JWST_SERVER_URL} and run this command again without "
                "--offline, or set CRDS_PATH to a cache that has them")
    return ("run this command again where the CRDS server answers (e.g. a login node), or set "
            "CRDS_PATH to a cache that has them")
