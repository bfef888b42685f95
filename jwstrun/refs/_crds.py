"""The only jwstrun module that imports :mod:`crds`.

Small, named calls into the stock crds client (configuration, context,
mappings, best references, downloads), each importing crds when first used so
that importing jwstrun stays fast.  Every crds function used here is public;
docs/upstream-private.md lists what crds offers no public route for.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..errors import CrdsError
from .env import OBSERVATORY, check_context_name
from .setup import check_setup

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_crds():
    """Keep crds' INFO chatter (build-context lookups...) out of jwstrun output."""
    crds_logger = logging.getLogger("CRDS")
    old = crds_logger.level
    if not log.isEnabledFor(logging.DEBUG):
        crds_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        crds_logger.setLevel(old)


# ---------------------------------------------------------------------------
# Configuration


def resync(settings: dict[str, str]) -> None:
    """Make an imported crds run with exactly the ``CRDS_*`` variables ``settings``.

    ``config.clear_crds_state`` removes every CRDS_* variable and resets crds'
    in-process cache-layout and read-only flags (so the mode tag of a new cache
    is read again); the server proxy follows CRDS_SERVER_URL
    (``api.set_crds_server``) and crds' function caches (contexts, mappings,
    server info) are dropped.
    """
    from crds.client import api
    from crds.core import config, utils

    config.clear_crds_state()
    os.environ.update(settings)
    url = settings.get("CRDS_SERVER_URL")
    if url:
        api.set_crds_server(url)
    utils.clear_function_caches()


def crds_path() -> str:
    """The cache crds uses (CRDS_PATH, or crds' default)."""
    from crds.core import config

    return config.get_crds_path()


def cache_readonly() -> bool:
    """Whether crds will refuse to write into the cache (CRDS_READONLY_CACHE)."""
    from crds.core import config

    return bool(config.get_cache_readonly())


def server_config_path() -> Path:
    return Path(crds_path()) / "config" / OBSERVATORY / "server_config"


def write_server_config() -> None:
    """Ask the server (or mirror) for its configuration and keep it in the cache."""
    from crds.core import heavy_client

    with quiet_crds():
        info = heavy_client.get_config_info(OBSERVATORY)
        heavy_client.cache_server_info(info, OBSERVATORY)


def locate_mapping(name: str) -> Path:
    import crds

    return Path(crds.locate_mapping(name, OBSERVATORY))


def locate_reference(name: str, instrument: str) -> Path:
    """Where the cache keeps a reference (the instrument picks the subdirectory)."""
    import crds

    return Path(crds.locate_file(name, OBSERVATORY,
                                 parameters={"META.INSTRUMENT.NAME": instrument}))


# ---------------------------------------------------------------------------
# Context

#: (context, CRDS_PATH, CRDS_CONTEXT, CRDS_SERVER_URL) -> the .pmap crds uses.
#: One process may switch caches; apply_crds_environment clears it.
_contexts: dict[tuple, str] = {}


def clear_context_cache() -> None:
    """Forget the contexts :func:`context_in_use` worked out."""
    _contexts.clear()


def context_in_use(context: str | None = None, purpose: str = "fetch") -> str:
    """The .pmap crds (and so stpipe/jwst) will use: ``context`` > CRDS_CONTEXT > default.

    The default is what the installed jwst would choose: crds asks the server
    for the build context of this jwst version; without a server it is the
    cache's ``operational_context`` from ``config/jwst/server_config``.
    This is stpipe's own ``crds_client.get_context_used`` logic.

    When crds has nothing to work from (no filled cache and no server that answers),
    :class:`CrdsError` says what to set, for ``purpose`` "fetch" (refs prefetch/bestrefs)
    or "run" (image2/image3): :func:`jwstrun.refs.setup.setup_problem`.
    """
    key = (context, crds_path(), os.environ.get("CRDS_CONTEXT"), os.environ.get("CRDS_SERVER_URL"))
    if key in _contexts:
        return _contexts[key]
    if context:
        check_context_name(context)
    from crds.core import heavy_client

    check_setup(os.environ, purpose)
    cfg = server_config_path()
    try:
        with quiet_crds():
            name = heavy_client.get_processing_mode(OBSERVATORY, context)[1]
    except SystemExit as exc:  # crds' fatal_error_on_exception exits on an unusable cache
        raise CrdsError(
            f"crds could not load its configuration from {cfg}. Check that the file is a "
            "server_config dict (observatory, operational_context, bad_files_list, last_synced)."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - crds raises many types here
        raise CrdsError(f"cannot determine the CRDS context: {exc}") from exc
    _contexts[key] = str(name)
    return str(name)


def load_context(context: str):
    """Load the pmap from the cache, with an actionable error if it is not there."""
    import crds

    try:
        with quiet_crds():
            return crds.get_pickled_mapping(context)
    except Exception as exc:  # noqa: BLE001 - IOError, MappingError, ChecksumError...
        mappath = Path(crds_path()) / "mappings" / OBSERVATORY
        present = sorted(p.name for p in mappath.glob("jwst_*.pmap")) if mappath.is_dir() else []
        hint = f" Contexts in this cache: {', '.join(present)}." if present else ""
        raise CrdsError(
            f"CRDS context {context} cannot be loaded from {mappath} ({type(exc).__name__}: "
            f"{exc}). Run `jwstrun refs prefetch` on a node with network, or set CRDS_PATH to a "
            f"synced cache.{hint}"
        ) from exc


# ---------------------------------------------------------------------------
# Rules of a context


def get_imap(pmap, instrument: str):
    """The instrument mapping; :class:`LookupError` when the context has none."""
    import crds

    try:
        return pmap.get_imap(instrument)
    except crds.CrdsError as exc:
        raise LookupError(str(exc)) from exc


def get_rmap(imap, reftype: str):
    """The rmap of ``reftype``, or None when the imap marks it N/A or omitted;
    :class:`LookupError` when crds cannot load it."""
    import crds
    from crds.core import exceptions as crexc

    try:
        return imap.get_rmap(reftype)
    except (crexc.IrrelevantReferenceTypeError, crexc.OmitReferenceTypeError):
        return None
    except crds.CrdsError as exc:
        raise LookupError(str(exc)) from exc


def useafter_dates(selector, dates: set) -> None:
    """Collect every UseAfter date of a selector tree (reformatted as crds compares them)."""
    from crds.core import selectors

    if not isinstance(selector, selectors.Selector):
        return
    if isinstance(selector, selectors.UseAfterSelector):
        for key in selector.keys():
            with contextlib.suppress(Exception):
                dates.add(reformat_date(key))
    for choice in selector.choices():
        useafter_dates(choice, dates)


def reformat_date(text: str) -> str:
    """A date as crds compares UseAfter dates (ValueError-like errors when unparsable)."""
    from crds.core import timestamp

    return timestamp.reformat_date(text)


def get_recommendations(header: dict, reftypes: list[str], context: str) -> dict:
    """crds' best references for one set of matching parameters."""
    import crds

    with quiet_crds():
        return crds.getrecommendations(header, reftypes=reftypes, context=context,
                                       observatory=OBSERVATORY)


def flat_schema_locations() -> dict[str, list[str]]:
    """{datamodel key: [FITS keyword, HDU]} for every key the core schema puts in FITS
    (slow: crds loads the schema through stdatamodels and asdf; docs/benchmarks.md)."""
    from crds.jwst import schema

    flat = schema.get_flat_schema()
    suffix = ".FITS_KEYWORD"
    return {
        key[: -len(suffix)]: [str(value),
                              str(flat.get(key[: -len(suffix)] + ".FITS_HDU", "PRIMARY")).upper()]
        for key, value in flat.items()
        if key.endswith(suffix)
    }


# ---------------------------------------------------------------------------
# Downloads (crds' own downloader: atomic per-file writes, locks, checksums)
#
# Both raise what crds raises; the callers turn it into a CrdsError saying where
# from and what to do.


def download_mappings(context: str, names: list[str]) -> None:
    """Fetch exactly these mappings (not their closures) into the cache."""
    from crds.client import api

    with quiet_crds():
        api.dump_mappings(context, mappings=list(names), raise_exceptions=True)


def download_references(context: str, names: list[str], instrument: str) -> None:
    """Fetch an instrument's references into the cache.

    ``api.dump_references`` cannot say which instrument a file is for, and an
    instrument-subdirectory cache needs it for names that do not spell it out:
    crds' ``FileCacher`` takes it (docs/upstream-private.md).
    """
    from crds.client import api

    cacher = api.FileCacher(context, ignore_cache=False, raise_exceptions=True,
                            parameters={"META.INSTRUMENT.NAME": instrument})
    with quiet_crds():
        cacher.get_local_files(list(names))
