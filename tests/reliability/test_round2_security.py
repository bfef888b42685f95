"""Hostile input, round two (issue 21, security items): header values never choose a path,
a '$' in OUTDIR is not expanded, symlinks planted in OUTDIR are replaced, never followed;
product-name templates reach no attribute; URLs lose their query secrets; odd file names
and broken footprints are refused early, naming the file as given."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

from ._helpers import (
    assert_no_traceback,
    assert_nothing_half_written,
    image2_args,
    tree_digest,
)

#: what a generated association name may look like (DMS style, lower case)
SAFE_ASN = re.compile(r"^[a-z0-9][a-z0-9_-]*_image3_asn\.json$")
GROUP_BY = "default,subarray,detector,module,visit,exp_type"


def _invoke(args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    assert_no_traceback(result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _error_line(result) -> str:
    """The one 'Error: ...' line of a refused command (exit 1)."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def _set_raw(path: Path, keyword: str, value: bytes) -> None:
    """Put ``value`` (NUL, newline: astropy refuses to write those) into a primary-header card."""
    raw = bytearray(path.read_bytes())
    end = raw.find(b"END" + b" " * 77)
    for start in range(0, end, 80):
        if raw[start:start + 8] == keyword.ljust(8).encode():
            raw[start:start + 80] = (keyword.ljust(8).encode() + b"= '" + value + b"'").ljust(80)
            path.write_bytes(bytes(raw))
            return
    raise KeyError(keyword)


#: hostile header values: (how it is written, value) -> what must happen
HOSTILE = {
    "slash": "{}/../../../../escaped",
    "backslash": "{}\\..\\..\\escaped",
    "dotdot": "..",
    "nul": b"{}\x00/../x",
    "newline": b"{}\n../../x",
    "long": "X" * 3000,
}


def _hostile_copies(cal_files, dest: Path, keywords, kind: str) -> Path:
    """Copies of the _cal files with a hostile value in each of ``keywords``."""
    from astropy.io import fits

    dest.mkdir(parents=True)
    value = HOSTILE[kind]
    for cal in cal_files:
        path = dest / cal.name
        shutil.copy(cal, path)
        header = fits.getheader(path)
        originals = {k: str(header[k]) for k in keywords}
        if isinstance(value, bytes):
            for k in keywords:
                _set_raw(path, k, value.replace(b"{}", originals[k].encode()))
        else:
            with fits.open(path, mode="update") as hdul:
                for k in keywords:
                    hdul[0].header[k] = value.format(originals[k])
    return dest


def _check_outcome(result, root: Path, before: dict, outdir: Path, keyword: str, kind: str):
    """Nothing outside OUTDIR changed; a safe association name or the expected Error line."""
    after = {k: v for k, v in tree_digest(root).items()
             if not k.startswith(str(outdir.relative_to(root)) + "/")}
    assert after == before, f"{keyword}={kind}: files outside OUTDIR changed or appeared"
    assert not [p for p in root.rglob("*escaped*") if outdir not in p.parents]
    if kind in ("nul", "newline"):
        line = _error_line(result)
        assert f"cannot read the FITS header (Unparsable card ({keyword})). Fix the header" \
            in line, line
        assert "_cal.fits" in line
    elif keyword == "EXP_TYPE":
        # jwstrun associates direct imaging only: every file is left out, so nothing is left
        assert "none of the 3 files is one jwstrun asn takes: 3 not direct imaging" \
            in _error_line(result)
    elif kind == "long":
        line = _error_line(result)
        assert f"_cal.fits: header keyword {keyword} is 3000 characters long, not a usable " \
            f"{keyword.lower()} (at most 40). Fix the header value." in line, line
    else:
        assert result.exit_code == 0, result.output
        names = [p.name for p in outdir.glob("*_asn.json")]
        assert names and all(SAFE_ASN.match(n) for n in names), names


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize(
    "keyword", ["FILTER", "PUPIL", "SUBARRAY", "DETECTOR", "MODULE", "VISIT", "EXP_TYPE"]
)
def test_header_values_cannot_name_asn_paths(cal_files, tmp_path, keyword, kind):
    """'jwstrun asn --group-by' on _cal files whose FILTER/PUPIL/SUBARRAY/DETECTOR/MODULE/
    VISIT/EXP_TYPE holds a separator, '..', a NUL, a newline or 3,000 characters: nothing is
    written outside OUTDIR; a DMS-style lower-case name or one clear Error line."""
    deep = tmp_path / "a" / "b" / "c" / "d"
    data = _hostile_copies(cal_files, deep / "in", [keyword], kind)
    before = tree_digest(tmp_path)
    outdir = deep / "out"
    result = _invoke(["asn", *sorted(data.iterdir()), "--group-by", GROUP_BY, "-o", outdir,
                      "--allow-outside"])
    _check_outcome(result, tmp_path, before, outdir, keyword, kind)


#: Hostile values image3 accepts and runs on (a full image3 each), in the slow suite only:
#: test_header_values_cannot_name_image3_paths[slash] runs image3 on a separator-holding
#: value, and test_header_values_cannot_name_asn_paths names the association from every kind.
IMAGE3_SLOW = {"backslash", "dotdot"}


@pytest.mark.parametrize("kind", [
    pytest.param(kind, marks=[pytest.mark.slow] if kind in IMAGE3_SLOW else [])
    for kind in HOSTILE])
def test_header_values_cannot_name_image3_paths(sim, cal_files, tmp_path, kind):
    """'jwstrun image3 in/*_cal.fits' with the hostile value in FILTER, PUPIL and SUBARRAY (the
    keywords its Level-3 names come from): association and products land in OUTDIR under
    DMS-style names, or one clear Error line; nothing outside OUTDIR changes."""
    deep = tmp_path / "a" / "b" / "c" / "d"
    data = _hostile_copies(cal_files, deep / "in", ["FILTER", "PUPIL", "SUBARRAY"], kind)
    before = tree_digest(tmp_path)
    outdir = deep / "out"
    result = _invoke(["image3", f"{data}/*_cal.fits", "-o", outdir, "--crds-env", sim.env_file,
                      "--no-progress", "-j", "1", "--no-report"])
    _check_outcome(result, tmp_path, before, outdir, "FILTER", kind)
    if result.exit_code == 0:
        products = assert_nothing_half_written(outdir)
        assert any(p.name.endswith("_i2d.fits") for p in products)


def test_dollar_in_outdir_is_not_expanded(sim, tmp_path):
    """image2 then image3 (association built in OUTDIR) into an OUTDIR named
    'dollar$HOME/out${X}' with X set, and image3 of an association in that directory into
    another: every product lands where it belongs, valid; nothing appears beside it
    (stpipe expands variables in output_dir and association paths)."""
    outdir = tmp_path / "dollar$HOME" / "out${X}"
    env = {"X": "1"}
    rates = sim.rate_files[:2]  # two exposures make a mosaic as well as three
    result = _invoke(image2_args(sim, outdir, *rates, jobs="2"), env=env)
    assert result.exit_code == 0, result.output
    image3 = ["--crds-env", sim.env_file, "--no-progress", "-j", "1", "--no-report"]
    result = _invoke(["image3", f"{outdir}/*_cal.fits", "-o", outdir, *image3], env=env)
    assert result.exit_code == 0, result.output
    (asn,) = outdir.glob("*_asn.json")
    result = _invoke(["image3", asn, "-o", tmp_path / "plain", *image3], env=env)
    assert result.exit_code == 0, result.output
    assert len(assert_nothing_half_written(tmp_path / "plain")) == 2 + 3  # crf, i2d, segm, cat
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dollar$HOME", "plain"]
    assert [p.name for p in outdir.parent.iterdir()] == ["out${X}"]
    products = assert_nothing_half_written(outdir)
    names = sorted(p.name for p in products)
    assert sum(n.endswith("_cal.fits") for n in names) == len(rates)
    assert sum(n.endswith("_i2d.fits") for n in names) == len(rates) + 1
    assert any(n.endswith("_cat.ecsv") for n in names)


def test_symlinks_planted_in_outdir_are_replaced_not_followed(sim, tmp_path, caplog):
    """Symlinks planted in OUTDIR to files and directories outside (a task's log, logs/,
    .jwstrun-tmp/, previews/, the write test): a re-run and its report replace them and
    leave every file outside unchanged."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    (outside / "dir" / "keep.txt").write_text("keep\n")
    outdir = tmp_path / "out"
    args = image2_args(sim, outdir, sim.rate_files[0], jobs="1")
    assert _invoke(args).exit_code == 0
    (log,) = (outdir / "logs").iterdir()
    log.unlink()
    log.symlink_to(victim)
    (outdir / ".jwstrun-tmp").symlink_to(outside / "dir")
    (outdir / "previews").symlink_to(outside / "dir")
    (outdir / f".jwstrun-write-test-{os.getpid()}").symlink_to(victim)  # CliRunner: this pid
    before = tree_digest(outside)
    result = _invoke([*args, "--force", "--report"])  # the worker moves its previews there
    assert result.exit_code == 0, result.output
    assert _invoke(["report", outdir]).exit_code == 0
    assert tree_digest(outside) == before
    assert not log.is_symlink() and "calwebb_image2" in log.read_text()
    assert (outdir / "previews").is_dir() and not (outdir / "previews").is_symlink()
    assert list((outdir / "previews").glob("*.png"))
    # logs/ itself a link to a directory outside: replaced by a directory, with a warning
    shutil.rmtree(outdir / "logs")
    (outdir / "logs").symlink_to(outside / "dir")
    # the CLI's "jwstrun" logger does not propagate to the root logger caplog listens on
    jwstrun_logger = logging.getLogger("jwstrun")
    jwstrun_logger.addHandler(caplog.handler)
    try:
        result = _invoke([*args, "--force"])
    finally:
        jwstrun_logger.removeHandler(caplog.handler)
    assert result.exit_code == 0, result.output
    assert f"{outdir / 'logs'}: was a symbolic link; replaced by a directory." in caplog.text
    assert tree_digest(outside) == before
    assert not (outdir / "logs").is_symlink() and list((outdir / "logs").glob("*.log"))


def test_product_name_templates_are_plain_fields(cal_files, tmp_path):
    """--product-name templates with a conversion, a huge width, an attribute, an index,
    positional or unbalanced fields: one clear Error line; plain {key} fields still work."""
    data = tmp_path / "in"
    data.mkdir()
    for cal in cal_files:
        os.link(cal, data / cal.name)
    files = sorted(data.iterdir())
    for template in ("{filter!r:>99999999999}", "{filter!r:>999999999}", "{filter.x}",
                     "{filter.__class__}", "{filter[0]}", "{filter:>300}", "{0}", "{}",
                     "m_{filter", "m_{nokey}"):
        result = _invoke(["asn", *files, "--group-by", "default", "-o", data,
                          "--product-name", template])
        assert _error_line(result) == (
            f"Error: --product-name '{template}': cannot fill it from the group keys (program, "
            "observation, instrument, filter, pupil, subarray, target, bkgdtarg); use plain "
            "fields such as {filter}, without '.', '[', '!' or ':'."
        ), result.output
    assert not list(data.glob("*.json"))
    result = _invoke(["asn", *files, "--group-by", "default", "-o", data,
                      "--product-name", "m_{filter}_{pupil}"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in data.glob("*.json")] == ["m_f200w_clear_image3_asn.json"]


def test_redact_url_hides_query_and_fragment_values(sim):
    """Tokens in a CRDS_SERVER_URL's user info, query string, parameters or fragment are
    shown as *** by redact_url and never printed by 'jwstrun refs doctor'."""
    from jwstrun.refs import read_env_file, redact_url

    assert redact_url("https://u:pw@h/x?token=abc&x=1#frag") == \
        "https://***@h/x?token=***&x=***#***"
    assert redact_url("https://h/p;session=s3cr3t?bare-token") == "https://h/p;***?***"
    assert redact_url("http://u:p@[::1?t=x") == "http://***@[::1"
    assert redact_url("https://crds.stsci.edu") == "https://crds.stsci.edu"
    crds = read_env_file(sim.env_file)
    url = "https://127.0.0.1:9/crds?api_token=TOKEN-in-query#access_token=TOKEN-in-fragment"
    result = _invoke(["refs", "doctor"], env={"CRDS_PATH": crds["CRDS_PATH"],
                                              "CRDS_SERVER_URL": url})
    assert "https://127.0.0.1:9/crds?api_token=***#***" in result.output, result.output
    assert "TOKEN-in" not in result.output


def test_file_name_with_a_newline_is_refused_early(sim, tmp_path):
    """An exposure whose file name holds a newline (or a non-ASCII character, which no FITS
    FILENAME card can hold either): refused before OUTDIR exists, with one clear line."""
    for name in ("jw_nrcb1 \nx_rate.fits", "jw_nrcb1\u00e9_rate.fits"):
        data = tmp_path / "in"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        os.link(sim.rate_files[0], data / name)
        result = _invoke(image2_args(sim, tmp_path / "out", f"{data}/*_rate.fits"))
        assert _error_line(result) == (
            f"Error: {str(data / name)!r}: the file name has a newline, control or non-ASCII "
            "character, which FITS headers (FILENAME) cannot hold. Rename the file."
        )
        assert not (tmp_path / "out").exists()


def test_messages_name_the_symlink_not_its_target(sim, tmp_path):
    """A truncated exposure given through a symlink: the Error line names the link as given,
    not the file it points to."""
    store = tmp_path / "store"
    store.mkdir()
    target = store / "jw_hidden_target_rate.fits"
    target.write_bytes(sim.rate_files[0].read_bytes()[:14400])
    link = tmp_path / "jw_given_nrcb1_rate.fits"
    link.symlink_to(target)
    result = _invoke(image2_args(sim, tmp_path / "out", link))
    line = _error_line(result)
    assert line.startswith(f"Error: {link}: is truncated"), line
    assert "hidden_target" not in result.output
    assert not (tmp_path / "out").exists()


def test_nan_s_region_is_reported_invalid(sim, cal_files, tmp_path):
    """A _cal whose S_REGION is a polygon of NaNs: image3 says the S_REGION is invalid (NaN
    vertices), not missing, naming the file."""
    from astropy.io import fits

    data = tmp_path / "in"
    data.mkdir()
    for cal in cal_files:
        shutil.copy(cal, data / cal.name)
    broken = data / cal_files[1].name
    with fits.open(broken, mode="update") as hdul:
        hdul["SCI"].header["S_REGION"] = "POLYGON ICRS " + " ".join(["nan"] * 8)
    result = _invoke(["image3", *sorted(data.iterdir()), "-o", tmp_path / "out", "--crds-env",
                      sim.env_file, "--no-progress", "-j", "1", "--no-report"])
    assert _error_line(result) == (
        f"Error: {broken}: S_REGION in its SCI header is invalid (NaN vertices), so the mosaic "
        "cannot be planned. Its WCS is broken: re-run 'jwstrun image2' on its _rate file."
    )
    assert not list((tmp_path / "out").glob("*.fits"))
