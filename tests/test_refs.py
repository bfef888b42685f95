"""Tests for jwstrun.refs and `jwstrun refs`: real crds client, real local caches.

Caches are written by the simulator's crds_cache writer (correct mapping
checksums, as crds checks them); a second copy of a cache plays the part of
the CRDS server through crds' own CRDS_*_URI download settings, so prefetch's
downloads go through crds' real FileCacher.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pprint
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun import refs
from jwstrun.cli import cli
from jwstrun.errors import CrdsError, InputError
from jwstrun.simulate.crds_cache import RefEntry, write_crds_cache

DET = ("META.INSTRUMENT.DETECTOR",)
DFP = ("META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL")
FP = ("META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL")
EARLY = "2014-01-01 00:00:00"
FLAT_SWITCH = "2023-06-01 00:00:00"


@pytest.fixture(autouse=True)
def _restore_crds_environment():
    """Every test may switch caches; give the next test (and other modules) the old CRDS_*."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    yield
    refs.apply_crds_environment(saved)


def entries(reftype: str, keys: tuple[str, ...], rules: dict) -> list[RefEntry]:
    """{match values: {useafter: file}} -> the simulator's selection rules."""
    return [RefEntry("nircam", reftype, name, tuple(zip(keys, values)), useafter)
            for values, dates in rules.items() for useafter, name in dates.items()]


def nircam_rules(flat_early="jwst_nircam_flat_0001.fits", photom=True) -> list[RefEntry]:
    """Every other reftype of the pipelines (and every pars-* type but tweakreg's) is N/A."""
    rules = [
        *entries("distortion", DET, {("NRCB1",): {EARLY: "jwst_nircam_distortion_0001.asdf"},
                                     ("NRCA1",): {EARLY: "jwst_nircam_distortion_0002.asdf"}}),
        *entries("flat", DFP, {
            ("NRCB1", "F200W", "CLEAR"): {EARLY: flat_early, FLAT_SWITCH: "jwst_nircam_flat_0002.fits"},
            ("NRCB1", "F150W", "CLEAR"): {EARLY: "jwst_nircam_flat_0003.fits"},
            ("NRCA1", "F200W", "CLEAR"): {EARLY: "jwst_nircam_flat_0004.fits"},
        }),
        *entries("apcorr", FP, {("F200W", "CLEAR"): {EARLY: "jwst_nircam_apcorr_0001.fits"},
                                ("F150W", "CLEAR"): {EARLY: "jwst_nircam_apcorr_0001.fits"}}),
        *entries("abvegaoffset", DET, {("NRCB1",): {EARLY: "jwst_nircam_abvegaoffset_0001.asdf"},
                                       ("NRCA1",): {EARLY: "jwst_nircam_abvegaoffset_0001.asdf"}}),
        *entries("pars-tweakregstep", DET, {
            ("NRCB1",): {EARLY: "jwst_nircam_pars-tweakregstep_0001.asdf"},
            ("NRCA1",): {EARLY: "jwst_nircam_pars-tweakregstep_0001.asdf"}}),
    ]
    if photom:
        rules += entries("photom", DET, {("NRCB1",): {EARLY: "jwst_nircam_photom_0001.fits"},
                                         ("NRCA1",): {EARLY: "jwst_nircam_photom_0002.fits"}})
    return rules


def write_cache(root: Path, rules: list[RefEntry], context="jwst_0001.pmap", unlisted=()) -> Path:
    """A real CRDS cache written by the simulator's writer, with small placeholder references
    (bestrefs and prefetch only need their names, sizes and checksums)."""
    for entry in rules:
        ref = root / "references" / "jwst" / "nircam" / entry.filename
        if not ref.exists():
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_bytes((entry.filename.encode() * 100)[:2880])  # distinct per file
    write_crds_cache(root, rules, context, unlisted=unlisted)
    return root


def serve_as_mirror(remote: Path) -> None:
    """Make the cache at ``remote`` a download source (CRDS_CONFIG_URI et al.): crds'
    downloader checks each file's size and sha1sum from the server info
    (``download_metadata``, crds-encoded)."""
    from crds.client import proxy

    metadata = {}
    for path in list(remote.glob("mappings/jwst/*")) + list(remote.glob("references/jwst/*/*")):
        metadata[path.name] = {"size": str(path.stat().st_size),
                               "sha1sum": hashlib.sha1(path.read_bytes()).hexdigest()}
    cfg = remote / "config" / "jwst" / "server_config"
    info = ast.literal_eval(cfg.read_text())
    info["download_metadata"] = proxy.crds_encode(metadata)
    cfg.write_text(pprint.pformat(info) + "\n")


@pytest.fixture
def cache(tmp_path) -> Path:
    # pars-skymatchstep is not even listed: stpipe then uses the step's defaults
    return write_cache(tmp_path / "crds_cache", nircam_rules(), unlisted=("pars-skymatchstep",))


def make_exposure(path: Path, detector="NRCB1", filt="F200W", pupil="CLEAR", date="2024-03-01",
                  time_obs="10:00:00", suffix_type="rate") -> Path:
    from stdatamodels.jwst import datamodels

    model = datamodels.ImageModel(np.zeros((8, 8), dtype=np.float32))
    meta = model.meta
    meta.telescope = "JWST"
    meta.instrument.name = "NIRCAM"
    meta.instrument.detector = detector
    meta.instrument.filter = filt
    meta.instrument.pupil = pupil
    meta.instrument.module = detector[3]
    meta.instrument.channel = "SHORT"
    meta.exposure.type = "NRC_IMAGE"
    meta.observation.date = date
    meta.observation.time = time_obs
    meta.subarray.name = "SUB64P"
    if suffix_type == "cal":
        meta.cal_step.photom = "COMPLETE"
    model.save(path)
    model.close()
    return path


@pytest.fixture
def exposures(tmp_path) -> list[Path]:
    """Six exposures: 4 alike within one UseAfter interval, 1 earlier, 1 other filter."""
    data = tmp_path / "data"
    data.mkdir()
    files = [make_exposure(data / f"jw01_00{i}_nrcb1_rate.fits", date=f"2024-03-0{i + 1}",
                           time_obs=f"1{i}:00:00") for i in range(4)]
    files.append(make_exposure(data / "jw01_004_nrcb1_rate.fits", date="2022-12-31"))
    files.append(make_exposure(data / "jw01_005_nrcb1_rate.fits", filt="F150W"))
    return files


def use(cache: Path, **kwargs) -> dict:
    env = refs.crds_environment(crds_path=cache, base={}, **kwargs)
    refs.apply_crds_environment(env)
    return env


# ---------------------------------------------------------------- environment


def test_env_file_and_precedence(tmp_path):
    env_file = tmp_path / "crds.env"
    env_file.write_text(
        "# written by jwstrun simulate\n"
        "export CRDS_PATH=crds_cache\n"
        f"export CRDS_SERVER_URL='{refs.SERVERLESS_URL}'\n"
        "export CRDS_CONTEXT=jwst_0001.pmap\n"
        "export OTHER=ignored\n"
    )
    env = refs.crds_environment(env_file=env_file, base={"CRDS_CONTEXT": "jwst_0009.pmap"})
    assert env == {
        "CRDS_PATH": str((tmp_path / "crds_cache").resolve()),
        "CRDS_SERVER_URL": refs.SERVERLESS_URL,
        "CRDS_CONTEXT": "jwst_0001.pmap",  # the file beats the ambient environment
    }
    pinned = refs.crds_environment(env_file=env_file, context="jwst_0002.pmap", base={})
    assert pinned["CRDS_CONTEXT"] == "jwst_0002.pmap"  # an explicit argument beats the file


def test_crds_path_implies_serverless_only_when_no_url(tmp_path):
    env = refs.crds_environment(crds_path=tmp_path, base={})
    assert env["CRDS_SERVER_URL"] == refs.SERVERLESS_URL
    kept = refs.crds_environment(crds_path=tmp_path, probe=False,
                                 base={"CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"})
    assert kept["CRDS_SERVER_URL"] == "https://jwst-crds.stsci.edu"
    offline = refs.crds_environment(crds_path=tmp_path, offline=True,
                                    base={"CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"})
    assert offline["CRDS_SERVER_URL"] == refs.SERVERLESS_URL


def test_bad_env_file_and_context_names(tmp_path):
    bad = tmp_path / "crds.env"
    bad.write_text("export CRDS_PATH\n")
    with pytest.raises(InputError) as err:
        refs.crds_environment(env_file=bad, base={})
    assert str(err.value) == f"{bad}:1: expected 'export NAME=value', got 'export CRDS_PATH'."
    with pytest.raises(InputError) as err:
        refs.crds_environment(context="1322", base={})
    assert str(err.value) == (
        "--crds-context '1322': expected a JWST pipeline context name such as jwst_1322.pmap "
        "(see `jwstrun refs doctor` for the contexts in your cache).")


def test_server_probe_is_fast_and_honest():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert refs.server_reachable(f"http://127.0.0.1:{port}")[0] is True
    finally:
        listener.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    assert refs.server_reachable(f"http://127.0.0.1:{closed_port}")[0] is False
    assert refs.server_reachable(refs.SERVERLESS_URL) == (
        False, "serverless mode: crds never contacts a server")
    # The real CRDS server: unreachable from here, answered within the probe limit.
    start = time.monotonic()
    env = refs.crds_environment(base={"CRDS_SERVER_URL": "https://jwst-crds-probe-test.stsci.edu"})
    assert time.monotonic() - start < refs.PROBE_TIMEOUT_SECONDS + 1
    assert env["CRDS_CLIENT_TIMEOUT_SECONDS"] == refs.UNREACHABLE_TIMEOUT_SECONDS


def test_apply_switches_an_already_imported_crds(tmp_path, exposures):
    import crds  # noqa: F401 - the point is that crds is already loaded

    first = write_cache(tmp_path / "first", nircam_rules())
    second = write_cache(tmp_path / "second", nircam_rules(flat_early="jwst_nircam_flat_0099.fits"),
                         context="jwst_0007.pmap")
    use(first)
    a = refs.resolve_bestrefs([exposures[4]])
    use(second)
    b = refs.resolve_bestrefs([exposures[4]])
    assert (a.context, b.context) == ("jwst_0001.pmap", "jwst_0007.pmap")
    assert a.references_for(exposures[4])["flat"] == "jwst_nircam_flat_0001.fits"
    assert b.references_for(exposures[4])["flat"] == "jwst_nircam_flat_0099.fits"
    assert b.crds_path == str(second.resolve())


# ---------------------------------------------------------------- reftypes


def test_reftypes_from_installed_pipelines():
    image2 = refs.reftypes_for("image2")
    image3 = refs.reftypes_for("calwebb_image3")
    for reftype in ("distortion", "filteroffset", "flat", "photom", "area", "bkg",
                    "pars-image2pipeline", "pars-flatfieldstep", "pars-resamplestep"):
        assert reftype in image2
    for reftype in ("apcorr", "abvegaoffset", "pars-image3pipeline", "pars-tweakregstep",
                    "pars-sourcecatalogstep"):
        assert reftype in image3
    assert "apcorr" not in image2 and "flat" not in image3
    no_flat = refs.reftypes_for("image2", steps={"flat_field": {"skip": True}})
    assert not {"flat", "fflat", "sflat", "dflat"} & set(no_flat)
    assert "pars-flatfieldstep" in no_flat  # stpipe still asks for every step's parameters
    assert "pars-image2pipeline" not in refs.reftypes_for("image2", pars=False)
    with pytest.raises(InputError, match="unknown pipeline 'spec2'"):
        refs.reftypes_for("spec2")


# ---------------------------------------------------------------- bestrefs


def test_grouping_matches_stpipe_per_exposure_lookup(cache, exposures):
    """Grouped answers equal crds' answer for each exposure's full datamodel parameters."""
    import crds
    from stdatamodels.jwst import datamodels

    use(cache)
    resolution = refs.resolve_bestrefs([str(p) for p in exposures])
    assert resolution.context == "jwst_0001.pmap"
    assert resolution.n_exposures == 6
    assert len(resolution.groups) == 3 and resolution.n_crds_calls == 3
    sizes = sorted(len(g.exposures) for g in resolution.groups)
    assert sizes == [1, 1, 4]
    imap = crds.get_pickled_mapping(resolution.context).get_imap("NIRCAM")
    for path in exposures:
        with datamodels.open(path) as model:
            params = model.get_crds_parameters()  # exactly what stpipe hands to crds
        grouped = resolution.references_for(path)
        known = [t for t in grouped if t in imap.selections]
        direct = crds.getrecommendations(params, reftypes=known, context=resolution.context,
                                         observatory="jwst")
        for reftype in known:
            expected = "N/A" if direct[reftype].startswith("NOT FOUND") else direct[reftype]
            assert grouped[reftype] == expected, (path.name, reftype)
    by_name = {Path(p).name: resolution.references_for(p) for p in exposures}
    assert by_name["jw01_000_nrcb1_rate.fits"]["flat"] == "jwst_nircam_flat_0002.fits"
    assert by_name["jw01_004_nrcb1_rate.fits"]["flat"] == "jwst_nircam_flat_0001.fits"
    assert by_name["jw01_005_nrcb1_rate.fits"]["flat"] == "jwst_nircam_flat_0003.fits"
    assert by_name["jw01_000_nrcb1_rate.fits"]["pars-tweakregstep"] == \
        "jwst_nircam_pars-tweakregstep_0001.asdf"
    assert by_name["jw01_000_nrcb1_rate.fits"]["pars-skymatchstep"] == "N/A"  # not in the imap
    assert resolution.problems == []


def test_five_hundred_alike_exposures_cost_one_lookup(cache):
    use(cache)
    headers = [{"INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "FILTER": "F200W", "PUPIL": "CLEAR",
                "EXP_TYPE": "NRC_IMAGE", "SUBARRAY": "FULL", "DATE-OBS": f"2024-03-{1 + i % 28:02d}",
                "TIME-OBS": f"{i % 24:02d}:{i % 60:02d}:00", "path": f"exp{i:03d}_rate.fits"}
               for i in range(500)]
    headers.append(dict(headers[0], DETECTOR="NRCA1", path="other_rate.fits"))
    resolution = refs.resolve_bestrefs(headers)
    assert resolution.n_crds_calls == 2 and len(resolution.groups) == 2
    big = max(resolution.groups, key=lambda g: len(g.exposures))
    assert len(big.exposures) == 500
    stamps = sorted(f"{h['DATE-OBS']} {h['TIME-OBS']}" for h in headers[:500])
    assert big.dates == (stamps[0], stamps[-1])
    assert resolution.references_for("other_rate.fits")["flat"] == "jwst_nircam_flat_0004.fits"


def test_cal_files_only_need_image3(cache, tmp_path):
    use(cache)
    cal = make_exposure(tmp_path / "jw01_001_nrcb1_cal.fits", suffix_type="cal")
    resolution = refs.resolve_bestrefs([cal])
    (group,) = resolution.groups
    assert group.pipelines == ("image3",)
    assert "flat" not in group.references and group.references["apcorr"] == \
        "jwst_nircam_apcorr_0001.fits"


def test_association_inputs(cache, exposures, tmp_path):
    use(cache)
    asn = exposures[0].parent / "l2_asn.json"
    asn.write_text(json.dumps({"asn_type": "image2", "products": [
        {"name": Path(p).stem, "members": [{"expname": Path(p).name, "exptype": "science"}]}
        for p in exposures[:2]]}))
    resolution = refs.resolve_bestrefs([str(asn)])
    assert resolution.n_exposures == 2 and resolution.n_crds_calls == 1
    broken = tmp_path / "bad_asn.json"
    broken.write_text(json.dumps({"products": [{"members": [{"expname": "gone_rate.fits"}]}]}))
    with pytest.raises(InputError) as err:
        refs.resolve_bestrefs([str(broken)])
    assert str(err.value) == f"{broken}: member gone_rate.fits not found at {tmp_path / 'gone_rate.fits'}."


def test_directory_input_means_its_exposures(cache, exposures):
    use(cache)
    resolution = refs.resolve_bestrefs([exposures[0].parent])
    assert resolution.n_exposures == 6 and resolution.n_crds_calls == 3
    assert resolution.groups[0].pipelines == ("image2", "image3")  # rate: both stages


def test_clear_caches_forgets_a_probe():
    """A long-lived process asks again after clear_caches (the server came back)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        assert refs.server_reachable(url)[0] is False  # bound, not listening yet
        listener.listen(1)
        assert refs.server_reachable(url)[0] is False  # remembered
        refs.clear_caches()
        assert refs.server_reachable(url)[0] is True
    finally:
        listener.close()
        refs.clear_caches()


def test_reftype_missing_from_imap_is_a_problem(tmp_path, exposures):
    # the imap does not list photom: image2's prefetch would fail
    root = write_cache(tmp_path / "holey", nircam_rules(photom=False), context="jwst_0003.pmap",
                       unlisted=("photom",))
    use(root)
    resolution = refs.resolve_bestrefs([exposures[0]])
    assert resolution.problems == [
        f"{exposures[0]}: no photom reference under jwst_0003.pmap (NIRCAM NRCB1 F200W CLEAR): "
        "reftype 'photom' is not listed in jwst_nircam_0001.imap; the pipeline's prefetch will fail"
    ]
    result = CliRunner().invoke(cli, ["refs", "bestrefs", str(exposures[0]), "--crds-path", str(root)])
    assert result.exit_code == 1
    assert "problem:" in result.output and "photom" in result.output


def test_missing_context_says_what_to_do(cache, exposures):
    use(cache, context="jwst_0042.pmap")
    with pytest.raises(CrdsError) as err:
        refs.resolve_bestrefs([exposures[0]])
    text = str(err.value)
    assert text.startswith(f"CRDS context jwst_0042.pmap cannot be loaded from {cache.resolve()}/mappings/jwst")
    assert text.endswith("Run `jwstrun refs prefetch` on a node with network, or set CRDS_PATH to a "
                         "synced cache. Contexts in this cache: jwst_0001.pmap.")


# ---------------------------------------------------------------- two contexts


def test_two_contexts_select_different_references(tmp_path, exposures):
    """The simulator's cache writer makes a second context; pinning picks the older rules."""
    from jwstrun.simulate import crds_cache

    root = tmp_path / "sim_cache"
    refdir = root / "references" / "jwst" / "nircam"
    refdir.mkdir(parents=True)
    for name in ("jwst_nircam_flat_1001.fits", "jwst_nircam_flat_1002.fits",
                 "jwst_nircam_distortion_1001.asdf"):
        (refdir / name).write_bytes(name.encode() * 100)
    match = (("META.INSTRUMENT.DETECTOR", "NRCB1"), ("META.INSTRUMENT.FILTER", "F200W"))
    dist = crds_cache.RefEntry("nircam", "distortion", "jwst_nircam_distortion_1001.asdf",
                               (("META.INSTRUMENT.DETECTOR", "NRCB1"),))
    old = crds_cache.write_crds_cache(root, [
        crds_cache.RefEntry("nircam", "flat", "jwst_nircam_flat_1001.fits", match), dist])
    new = crds_cache.add_context(root, [
        crds_cache.RefEntry("nircam", "flat", "jwst_nircam_flat_1002.fits", match)], "jwst_0002.pmap")
    assert (old, new) == ("jwst_0001.pmap", "jwst_0002.pmap")

    runner = CliRunner()
    exposure = str(exposures[0])

    def flat_of(*args, env=None):
        result = runner.invoke(cli, ["refs", "bestrefs", exposure, "--crds-path", str(root),
                                     "--json", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        return data["context"], data["groups"][0]["references"]["flat"]

    assert flat_of() == ("jwst_0002.pmap", "jwst_nircam_flat_1002.fits")  # operational
    assert flat_of("--crds-context", "jwst_0001.pmap") == ("jwst_0001.pmap", "jwst_nircam_flat_1001.fits")
    assert flat_of(env={"CRDS_CONTEXT": "jwst_0001.pmap"}) == ("jwst_0001.pmap", "jwst_nircam_flat_1001.fits")


# ---------------------------------------------------------------- prefetch


@pytest.fixture
def mirror(cache, tmp_path) -> dict:
    """A copy of the cache served through crds' CRDS_*_URI settings, as a server would."""
    remote = tmp_path / "remote"
    shutil.copytree(cache, remote)
    flat = remote / "flat_references"
    flat.mkdir()
    for ref in (remote / "references" / "jwst").glob("*/*"):
        shutil.copy(ref, flat / ref.name)
    serve_as_mirror(remote)
    return {
        "CRDS_CONFIG_URI": str(remote / "config" / "jwst"),
        "CRDS_MAPPING_URI": (remote / "mappings" / "jwst").as_uri(),
        "CRDS_REFERENCE_URI": flat.as_uri(),
        "CRDS_SERVER_URL": refs.SERVERLESS_URL,
    }


def test_prefetch_fetches_then_runs_offline(mirror, exposures, tmp_path):
    from stdatamodels.jwst import datamodels
    from stpipe import crds_client

    local = tmp_path / "empty_cache"
    refs.apply_crds_environment(refs.crds_environment(crds_path=local, base=mirror))
    report = refs.prefetch([str(p) for p in exposures])
    fetched_files, fetched_bytes = report.fetched
    on_disk = [p for p in local.rglob("*") if p.is_file() and p.parent.name != "jwst" or
               p.suffix in (".pmap", ".imap", ".rmap")]
    names = {f.name for f in report.files}
    assert report.context == "jwst_0001.pmap" and report.present == (0, 0)
    assert fetched_files == len(names) == 8 + 8  # 8 mappings, 8 references for these inputs
    assert fetched_bytes == sum((local / "references" / "jwst" / "nircam" / n).stat().st_size
                                for n in names if not n.endswith("map")) + \
        sum((local / "mappings" / "jwst" / n).stat().st_size for n in names if n.endswith("map"))
    assert "jwst_nircam_photom_0002.fits" not in names  # NRCA1 only: not needed by these inputs
    assert (local / "config" / "jwst" / "server_config").is_file() and on_disk

    again = refs.prefetch([str(p) for p in exposures])
    assert again.fetched == (0, 0) and again.present == (fetched_files, fetched_bytes)

    # Network gone: serverless, read-only, pinned context; stpipe's own crds adapter.
    refs.apply_crds_environment(refs.worker_environment({"CRDS_PATH": str(local)}, report.context))
    types = refs.reftypes_for("image2", pars=False)
    for path in exposures:
        with datamodels.open(path) as model:
            paths = crds_client.get_multiple_reference_paths(model.get_crds_parameters(), types, "jwst")
        assert paths["flat"].startswith(str(local)) and Path(paths["flat"]).is_file()
        assert paths["area"] == "N/A"


def test_prefetch_offline_with_missing_file_fails_fast(cache, exposures):
    (cache / "references" / "jwst" / "nircam" / "jwst_nircam_flat_0003.fits").unlink()
    use(cache)
    start = time.monotonic()
    with pytest.raises(CrdsError) as err:
        refs.prefetch([str(p) for p in exposures])
    assert time.monotonic() - start < 10
    assert str(err.value) == (
        f"1 reference file(s) are not in the CRDS cache {cache.resolve()} and the CRDS server cannot "
        f"be reached ({refs.SERVERLESS_URL} (serverless mode: crds never contacts a "
        f"server)):\n  jwst_nircam_flat_0003.fits (flat; needed by {exposures[5]})\n"
        "To fix: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu and run this command again "
        "without --offline, or set CRDS_PATH to a cache that has them."
    )


def test_prefetch_cli_reports_counts(mirror, exposures, tmp_path):
    local = tmp_path / "cli_cache"
    runner = CliRunner()
    args = ["refs", "prefetch", *map(str, exposures), "--crds-path", str(local)]
    first = runner.invoke(cli, args + ["--json"], env=mirror, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["fetched"]["files"] == 16 and data["present"]["files"] == 0
    assert data["context"] == "jwst_0001.pmap" and "env_file" not in data
    second = runner.invoke(cli, args, env=mirror, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "fetched:         0 files, 0 B" in second.output
    assert "already present: 16 files" in second.output


def test_prefetch_writes_the_env_file_later_runs_use(mirror, exposures, tmp_path):
    """--write-env keeps the cache and the context prefetch used: later commands take it
    with --crds-env (no context number copied by hand), a shell with `source`."""
    import subprocess

    local = tmp_path / "cli_cache"
    env_file = tmp_path / "crds.env"
    runner = CliRunner()
    args = ["refs", "prefetch", *map(str, exposures), "--crds-path", str(local),
            "--write-env", str(env_file)]
    result = runner.invoke(cli, args, env=mirror, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"Wrote {env_file} (CRDS_PATH, CRDS_CONTEXT=jwst_0001.pmap): give later runs "
        f"--crds-env {env_file}.")
    assert env_file.read_text().splitlines()[-2:] == [
        f"export CRDS_PATH={local.resolve()}", "export CRDS_CONTEXT=jwst_0001.pmap"]
    assert refs.read_env_file(env_file) == {"CRDS_PATH": str(local.resolve()),
                                            "CRDS_CONTEXT": "jwst_0001.pmap"}
    sourced = subprocess.run(["bash", "-c", f'source "{env_file}" && echo "$CRDS_CONTEXT"'],
                             capture_output=True, text=True, check=True)
    assert sourced.stdout == "jwst_0001.pmap\n"
    as_json = runner.invoke(cli, [*args, "--json"], env=mirror, catch_exceptions=False)
    assert json.loads(as_json.stdout)["env_file"] == str(env_file)
    # the network gone: the written file alone is enough for the next command
    later = runner.invoke(cli, ["refs", "bestrefs", str(exposures[0]), "--crds-env", str(env_file),
                                "--json"], env=no_crds(), catch_exceptions=False)
    assert later.exit_code == 0, later.output
    assert json.loads(later.stdout)["context"] == "jwst_0001.pmap"
    unwritable = runner.invoke(cli, [*args[:-1], str(tmp_path / "no" / "such" / "dir.env")],
                               env=mirror)
    assert unwritable.exit_code == 1
    assert unwritable.output == (f"Error: {tmp_path / 'no' / 'such' / 'dir.env'}: cannot write "
                                 "the CRDS environment file (No such file or directory). Give a "
                                 "path in a writable directory.\n")


# ---------------------------------------------------------------- doctor & CLI


def test_doctor_reports_coverage_and_advice(cache, exposures):
    runner = CliRunner()
    ok = runner.invoke(cli, ["refs", "doctor", *map(str, exposures), "--crds-path", str(cache), "--json"],
                       catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] and data["context"] == "jwst_0001.pmap" and data["serverless"]
    assert data["coverage"]["needed"] == 8 and data["coverage"]["missing"] == []
    assert data["contexts_in_cache"] == ["jwst_0001.pmap"] and data["cache_files"] > 0
    (cache / "references" / "jwst" / "nircam" / "jwst_nircam_flat_0002.fits").unlink()
    bad = runner.invoke(cli, ["refs", "doctor", *map(str, exposures), "--crds-path", str(cache)])
    assert bad.exit_code == 1
    assert "1 of 8 reference files the inputs need are not in the cache" in bad.output
    assert "advice:" in bad.output and "jwstrun refs prefetch" in bad.output


def no_crds() -> dict:
    """A CliRunner ``env`` that removes every CRDS_* variable: a first-time user's shell."""
    return {key: None for key in [*os.environ, "CRDS_PATH", "CRDS_SERVER_URL"]
            if key.startswith("CRDS_")}


def closed_port_url() -> str:
    """A server URL nothing listens on: refused at once, like a compute node's firewall
    that rejects (the real server's name does not even resolve here)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return f"http://127.0.0.1:{port}"


USE_FILLED = "use a filled cache: --crds-env FILE, --crds-path DIR or export CRDS_PATH=DIR."
NOT_CONFIGURED = ("CRDS is not configured: CRDS_PATH is not set (crds would fall back to "
                  "/grp/crds/cache, an STScI-internal path) and CRDS_SERVER_URL is not set.")
OFFLINE = ("and crds is offline (no CRDS server: --offline, --crds-path without CRDS_SERVER_URL, "
           "or a serverless CRDS_SERVER_URL), so nothing can be fetched into it.")


def test_setup_cases_and_their_advice(tmp_path, cache):
    """Each set-up crds cannot work from, named, with advice per purpose; pure (no crds)."""
    from jwstrun.refs.setup import setup_problem

    def problem(env, purpose="fetch"):
        return setup_problem(refs.crds_setup(env), purpose)

    assert problem({}) == ("not-configured", NOT_CONFIGURED,
                           "To use the JWST CRDS server: export CRDS_SERVER_URL=https://jwst-crds"
                           ".stsci.edu CRDS_PATH=$HOME/crds_cache (any directory; crds creates "
                           "it), then run this command again.")
    assert problem({}, "run")[2] == (
        "Either fetch the references first: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu "
        "CRDS_PATH=$HOME/crds_cache (any directory; crds creates it), then `jwstrun refs "
        f"prefetch INPUTS`; or {USE_FILLED}")
    assert problem({"CRDS_SERVER_URL": refs.SERVERLESS_URL})[1] == NOT_CONFIGURED.replace(
        "CRDS_SERVER_URL is not set", "CRDS_SERVER_URL is in serverless mode")
    assert problem({"CRDS_SERVER_URL": refs.JWST_SERVER_URL}) == (
        "no-cache-path",
        "CRDS_SERVER_URL is set but CRDS_PATH is not, so crds has nowhere to keep reference "
        "files (crds would fall back to /grp/crds/cache, an STScI-internal path).",
        "Set a directory for them: export CRDS_PATH=$HOME/crds_cache (any directory; crds "
        "creates it), then run this command again.")
    new = tmp_path / "new_cache"
    assert problem({"CRDS_PATH": str(new)}) == (
        "empty-offline", f"The CRDS cache {new} does not exist yet {OFFLINE}",
        "To fill it from the JWST CRDS server: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu "
        f"and run this command again without --offline; or {USE_FILLED}")
    new.mkdir()
    (new / "notes.txt").write_text("not a cache")
    assert problem({"CRDS_PATH": str(new), "CRDS_SERVER_URL": refs.SERVERLESS_URL}, "run") == (
        "empty-offline",
        f"The CRDS cache {new} has no config/jwst/server_config (crds never filled it) {OFFLINE}",
        "Either fill it first: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu, then `jwstrun "
        "refs prefetch INPUTS` with the same CRDS_PATH on a node with network; or " + USE_FILLED)
    url = closed_port_url()
    detail = refs.server_reachable(url)[1]
    assert detail.startswith("127.0.0.1:") and "refused" in detail
    assert problem({"CRDS_PATH": str(tmp_path / "c"), "CRDS_SERVER_URL": url}) == (
        "empty-unreachable",
        f"The CRDS cache {tmp_path / 'c'} does not exist yet and the CRDS server {url} does not "
        f"answer ({detail}).",
        f"Run this command where the server answers (e.g. a login node; check a proxy or VPN); "
        f"or {USE_FILLED}")
    # crds can work: a filled cache (whatever the server), a mirror, a server that answers
    assert problem({"CRDS_PATH": str(cache), "CRDS_SERVER_URL": url}) is None
    assert problem({"CRDS_PATH": str(new), "CRDS_CONFIG_URI": str(cache / "config" / "jwst")}) is None
    assert problem({"CRDS_DEFAULT_CACHE": str(cache)}) is None  # crds' fallback, filled (STScI)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        answering = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert problem({"CRDS_PATH": str(new), "CRDS_SERVER_URL": answering}) is None
    modes = {name: refs.crds_setup(env).mode for name, env in {
        "nothing": {}, "path": {"CRDS_PATH": str(cache)}, "server": {"CRDS_SERVER_URL": url}}.items()}
    assert modes == {"nothing": "not-configured", "path": "offline", "server": "online"}


def test_refs_commands_tell_a_newcomer_what_to_set(tmp_path, exposures):
    """No CRDS_* at all: prefetch and bestrefs say which two variables to set (not "run
    prefetch"); with --crds-path on an empty directory, prefetch says it is offline."""
    runner = CliRunner()
    for command in ("prefetch", "bestrefs"):
        result = runner.invoke(cli, ["refs", command, str(exposures[0])], env=no_crds())
        assert result.exit_code == 1, result.output
        assert result.output == (
            f"Error: {NOT_CONFIGURED} To use the JWST CRDS server: export CRDS_SERVER_URL="
            "https://jwst-crds.stsci.edu CRDS_PATH=$HOME/crds_cache (any directory; crds creates "
            "it), then run this command again.\n")
    empty = tmp_path / "crds_cache"
    empty.mkdir()
    result = runner.invoke(cli, ["refs", "prefetch", str(exposures[0]), "--crds-path", str(empty)],
                           env=no_crds())
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: The CRDS cache {empty.resolve()} is empty {OFFLINE} To fill it from the JWST CRDS server: "
        "export CRDS_SERVER_URL=https://jwst-crds.stsci.edu and run this command again without "
        f"--offline; or {USE_FILLED}\n")
    assert list(empty.iterdir()) == []


def test_doctor_without_cache_config(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["refs", "doctor", "--crds-path", str(empty), "--json"],
                                env=no_crds())
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["status"], data["mode"]) == ("empty-offline", "offline")
    assert data["problems"] == [{
        "problem": f"The CRDS cache {empty.resolve()} is empty {OFFLINE}",
        "advice": "Either fill it first: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu, then "
                  "`jwstrun refs prefetch INPUTS` with the same CRDS_PATH on a node with network; "
                  "or " + USE_FILLED,
    }]


def test_doctor_with_nothing_set_says_not_configured():
    """Forgot to configure: exit 1, what to set, and crds' fallback named for what it is."""
    runner = CliRunner()
    result = runner.invoke(cli, ["refs", "doctor", "--json"], env=no_crds())
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["status"], data["mode"], data["crds_path"]) == ("not-configured",
                                                                 "not-configured", None)
    assert data["problems"] == [{"problem": NOT_CONFIGURED, "advice": (
        "Either fetch the references first: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu "
        "CRDS_PATH=$HOME/crds_cache (any directory; crds creates it), then `jwstrun refs "
        f"prefetch INPUTS`; or {USE_FILLED}")}]
    text = " ".join(runner.invoke(cli, ["refs", "doctor"], env=no_crds()).output.split())
    assert "CRDS_PATH (not set: crds would fall back to /grp/crds/cache, an STScI-internal path)" \
        in text
    assert "mode not-configured - no cache and no server" in text
    assert "status not-configured - neither CRDS_PATH nor a CRDS server is set" in text


def test_doctor_new_cache_with_a_server(tmp_path):
    """Step 1 of docs/workflows/real-data.md: CRDS_PATH=$HOME/crds_cache (not created yet)
    and a server URL.  A server that answers: "to-fill", exit 0.  One that does not (a
    compute node): "empty-unreachable", exit 1, advice to prefetch where it answers."""
    new = tmp_path / "crds_cache"
    runner = CliRunner()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = runner.invoke(cli, ["refs", "doctor", "--json"],
                               env={**no_crds(), "CRDS_PATH": str(new), "CRDS_SERVER_URL": url})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["status"], data["mode"], data["problems"]) == ("to-fill", "online", [])
    assert data["notes"][0] == (
        f"The CRDS cache {new} does not exist yet: `jwstrun refs prefetch INPUTS` will fill it "
        f"from {url} (image2 and image3 also fetch what they need while the server answers).")
    assert not new.exists()

    refs.clear_probe_cache()  # the next URL must be probed, whatever its port
    url = closed_port_url()
    result = runner.invoke(cli, ["refs", "doctor", "--json"],
                           env={**no_crds(), "CRDS_PATH": str(new), "CRDS_SERVER_URL": url})
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert (data["status"], data["mode"]) == ("empty-unreachable", "online")
    assert data["problems"] == [{
        "problem": f"The CRDS cache {new} does not exist yet and the CRDS server {url} does not "
                   f"answer ({data['reachable_detail']}).",
        "advice": "Either fill it first where the server answers (a login node; or check the URL, "
                  "a proxy or a VPN here): `jwstrun refs prefetch INPUTS` with the same CRDS_PATH, "
                  f"on storage this node sees; or {USE_FILLED}",
    }]


def test_doctor_filled_cache_without_network_is_ready(cache, exposures):
    """A filled cache on a compute node: offline on purpose is "ready"; a real server URL
    that does not answer is a note there, not a problem (exit 0 both times)."""
    runner = CliRunner()
    offline = runner.invoke(cli, ["refs", "doctor", *map(str, exposures), "--crds-path", str(cache),
                                  "--json"], env=no_crds())
    assert offline.exit_code == 0, offline.output
    data = json.loads(offline.stdout)
    assert (data["status"], data["mode"], data["problems"]) == ("ready", "offline", [])
    url = closed_port_url()
    online = runner.invoke(cli, ["refs", "doctor", *map(str, exposures), "--json"],
                           env={**no_crds(), "CRDS_PATH": str(cache), "CRDS_SERVER_URL": url,
                                "CRDS_MODE": "local"})
    assert online.exit_code == 0, online.output
    data = json.loads(online.stdout)
    assert (data["status"], data["mode"], data["problems"]) == ("ready", "online", [])
    assert data["coverage"]["missing"] == [] and data["context"] == "jwst_0001.pmap"
    assert (f"The CRDS server {url} does not answer ({data['reachable_detail']}): runs use the "
            "cache alone (jwstrun lowers crds' client timeout to 5 s). Normal on a compute node "
            "without network; --offline skips the probe.") in data["notes"]
    assert ("CRDS_MODE=local computes best references from the cache, but crds still asks the "
            "server for its configuration: --offline keeps it off the network.") in data["notes"]


def test_storage_kind_from_mounts(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "server:/export /shared nfs4 rw 0 0\n"
                      "tmpfs /tmp tmpfs rw 0 0\n")
    assert refs.filesystem_of("/shared/crds/cache", mounts_file=str(mounts)) == ("nfs4", "/shared")
    assert refs.filesystem_of("/home/user/crds", mounts_file=str(mounts)) == ("ext4", "/")
    assert refs.storage_kind("nfs4") == "shared" and refs.storage_kind("lustre") == "shared"
    assert refs.storage_kind("ext4") == "local" and refs.storage_kind("tmpfs") == "local"


def test_bestrefs_table_and_bad_input(cache, exposures, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["refs", "bestrefs", str(exposures[0].parent / "*_rate.fits"),
                                 "--crds-path", str(cache)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "6 exposure(s) in 3 group(s), 3 CRDS lookup(s)" in " ".join(result.output.split())
    assert "jwst_nircam_flat_0002.fits" in result.output
    missing = tmp_path / "nope_rate.fits"
    result = runner.invoke(cli, ["refs", "bestrefs", str(missing), "--crds-path", str(cache)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {missing}: file not found. Check the path or the glob pattern."


def test_bestrefs_and_doctor_off_a_terminal_keep_paths_whole(tmp_path):
    """Click's runner, like a pipe or a batch log, is not a terminal: plain lines, the
    cache and exposure paths (over 150 characters) whole, one line per reference."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 40)
    cache = write_cache(deep / "crds_cache", nircam_rules())
    data = deep / "data"
    data.mkdir()
    files = [make_exposure(data / f"jw01234001001_02101_0000{i}_nrcb1_rate.fits",
                           time_obs=f"1{i}:00:00") for i in (1, 2)]
    runner = CliRunner()
    result = runner.invoke(cli, ["refs", "bestrefs", str(data), "--crds-path", str(cache)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"Context jwst_0001.pmap (cache {cache}): 2 exposure(s) in 1 group(s), "
                        "1 CRDS lookup(s).")
    assert f"  {files[0]}, {files[1]}" in lines
    rows = dict(line.split() for line in lines if line.startswith("  ") and len(line.split()) == 2)
    assert rows["flat"] == "jwst_nircam_flat_0002.fits"
    assert rows["pars-tweakregstep"] == "jwst_nircam_pars-tweakregstep_0001.asdf"
    result = runner.invoke(cli, ["refs", "doctor", str(files[0]), "--crds-path", str(cache)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"  {'CRDS_PATH':<17} {cache}" in result.output.splitlines()


# ---------------------------------------------------------------- end to end


_OFFLINE_IMAGE2 = r'''
import json, sys
attempts = []
def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        attempts.append(event)
sys.addaudithook(audit)
from jwst.pipeline import Image2Pipeline
from stdatamodels.jwst import datamodels
result = Image2Pipeline.call(sys.argv[1], output_dir=sys.argv[2], save_results=True,
                             steps={"resample": {"skip": True}})
model = result[0] if isinstance(result, (list, tuple)) else result
with datamodels.open(model) as cal:
    status = {"flat": cal.meta.cal_step.flat_field, "photom": cal.meta.cal_step.photom,
              "r_flat": cal.meta.ref_file.flat.name, "context": cal.meta.ref_file.crds.context_used}
print("RESULT " + json.dumps({"attempts": attempts, **status}))
'''


def test_simulated_program_prefetch_then_image2_offline(tmp_path):
    """Simulator cache as the 'server'; prefetch into an empty cache; real image2 offline."""
    import subprocess
    import sys

    from jwstrun.simulate import simulate_program

    sim = simulate_program(tmp_path / "sim", n_dithers=2, subarray="SUB160")
    remote = tmp_path / "server"
    shutil.copytree(sim.crds_path, remote)
    flat = remote / "flat_references"
    flat.mkdir()
    for ref in (remote / "references" / "jwst").glob("*/*"):
        shutil.copy(ref, flat / ref.name)
    serve_as_mirror(remote)
    mirror = {"CRDS_CONFIG_URI": str(remote / "config" / "jwst"),
              "CRDS_MAPPING_URI": (remote / "mappings" / "jwst").as_uri(),
              "CRDS_REFERENCE_URI": flat.as_uri(), "CRDS_SERVER_URL": refs.SERVERLESS_URL}
    node_cache = tmp_path / "node_cache"
    refs.apply_crds_environment(refs.crds_environment(crds_path=node_cache, base=mirror))
    report = refs.prefetch([str(p) for p in sim.rate_files])
    assert report.context == sim.crds_context and report.present == (0, 0)
    needed = set(report.resolution.files)
    assert {"distortion", "flat", "photom"} <= {t for f in report.files for t in f.reftypes}
    assert needed == {p.name for p in (node_cache / "references").rglob("*") if p.is_file()}

    worker = refs.worker_environment({"CRDS_PATH": str(node_cache)}, report.context)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(worker)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_IMAGE2, str(sim.rate_files[0]), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["attempts"] == []  # not one socket: the network could as well be gone
    assert result["flat"] == result["photom"] == "COMPLETE"
    assert result["context"] == report.context
    expected_flat = report.resolution.references_for(sim.rate_files[0])["flat"]
    assert result["r_flat"] == f"crds://{expected_flat}"
