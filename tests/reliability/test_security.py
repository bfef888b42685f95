"""Nothing from an association, profile or FITS header makes jwstrun write outside OUTDIR
or import code; YAML is loaded safely; no secret from the environment is ever written
to OUTDIR (manifest, logs, report) or printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

from ._helpers import (
    assert_no_traceback,
    assert_nothing_half_written,
    image2_args,
    jwstrun_command,
    tree_digest,
)

SECRETS = {
    "MY_API_TOKEN": "tok-7f3a9c1e-secret",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-secret",
    "GITHUB_TOKEN": "ghp_0123456789abcdefSECRET",
    "DB_PASSWORD": "correct-horse-battery-staple",
}
URL_PASSWORD = "hunter2-in-url"


@pytest.fixture(scope="module")
def hostile_run(sim, tmp_path_factory):
    """A real run whose exposure's FILENAME header points outside, with secrets in the
    environment and a password in CRDS_SERVER_URL; then ``jwstrun report``."""
    from astropy.io import fits

    from jwstrun.refs import SERVERLESS_URL, read_env_file

    root = tmp_path_factory.mktemp("hostile")
    data = root / "deep" / "er"
    data.mkdir(parents=True)
    rate = data / sim.rate_files[0].name
    shutil.copy(sim.rate_files[0], rate)
    with fits.open(rate, mode="update") as hdul:
        hdul[0].header["FILENAME"] = "../../escape_rate.fits"
        hdul[0].header["OBS_ID"] = "../../../escape"
    outdir = data / "out"
    crds = read_env_file(sim.env_file)
    env = dict(os.environ, **SECRETS)
    env.update(CRDS_PATH=crds["CRDS_PATH"], CRDS_CONTEXT=crds["CRDS_CONTEXT"],
               CRDS_SERVER_URL=SERVERLESS_URL.replace("://", f"://alice:{URL_PASSWORD}@"))
    before = tree_digest(root)
    args = ["image2", rate, "-o", outdir, "-j", "1", "--no-progress", "--json"]
    run = subprocess.run(jwstrun_command(*args), env=env, capture_output=True, text=True,
                         timeout=600)
    report = subprocess.run(jwstrun_command("report", outdir), env=env, capture_output=True,
                            text=True, timeout=300)
    return {"root": root, "data": data, "outdir": outdir, "rate": rate, "run": run,
            "report": report, "before": before}


def test_hostile_header_run_writes_only_into_outdir(hostile_run):
    """FILENAME = '../../escape_rate.fits' in the exposure's header: products are named
    after the file and nothing outside OUTDIR appears or changes."""
    run = hostile_run["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    outdir = hostile_run["outdir"]
    products = assert_nothing_half_written(outdir)
    base = hostile_run["rate"].name.removesuffix("_rate.fits")
    assert sorted(p.name for p in products) == [f"{base}_cal.fits", f"{base}_i2d.fits"]
    # Outside OUTDIR nothing changed and nothing appeared (the input is untouched).
    after = {k: v for k, v in tree_digest(hostile_run["root"]).items()
             if not k.startswith("deep/er/out/")}
    assert after == hostile_run["before"]
    assert not list(hostile_run["root"].rglob("escape*"))


def test_no_secret_is_written_or_printed(hostile_run):
    """API tokens, AWS keys, a password and a CRDS_SERVER_URL password in the environment
    of a run and its report: in no file of OUTDIR, on neither stream."""
    assert hostile_run["report"].returncode == 0, hostile_run["report"].stderr[-2000:]
    outdir = hostile_run["outdir"]
    assert (outdir / "jwstrun-report.html").exists()
    texts = {"stdout": hostile_run["run"].stdout, "stderr": hostile_run["run"].stderr,
             "report stdout": hostile_run["report"].stdout,
             "report stderr": hostile_run["report"].stderr}
    for path in outdir.rglob("*"):
        if path.is_file():
            texts[str(path.relative_to(outdir))] = path.read_bytes().decode("latin-1")
    assert len(texts) >= 8  # products, manifest, log, report, streams
    for where, text in texts.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} leaked into {where}"
        assert URL_PASSWORD not in text, f"the CRDS_SERVER_URL password leaked into {where}"
    manifest = (outdir / "jwstrun-manifest.json").read_text()
    for name in SECRETS:
        assert name not in manifest  # environment variables are not recorded at all


def test_association_cannot_point_outside(sim, tmp_path):
    """Product names with separators and members outside the association's directory are
    refused (image3 writes products named after the association's product)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    asn_dir = tmp_path / "asn"
    asn_dir.mkdir()
    for rate in sim.rate_files:
        shutil.copy(rate, asn_dir / rate.name)
    members = [{"expname": p.name, "exptype": "science"} for p in sim.rate_files]
    cases = {
        "../outside/x": "contains a path separator",
        "..": "contains a path separator, '..' or a leading dot",
        "/tmp/abs": "contains a path separator",
    }
    for name, fragment in cases.items():
        path = asn_dir / "evil_asn.json"
        path.write_text(json.dumps({"asn_type": "image2", "products": [
            {"name": name, "members": members[:1]}]}))
        result = CliRunner().invoke(cli, ["image2", str(path), "-o", str(tmp_path / "out")])
        assert result.exit_code == 1 and fragment in result.output, result.output
    for expname in (str(outside / "x_rate.fits"), "../outside/x_rate.fits", "/etc/passwd"):
        path = asn_dir / "evil_asn.json"
        path.write_text(json.dumps({"asn_type": "image2", "products": [
            {"name": "p", "members": [{"expname": expname, "exptype": "science"}]}]}))
        result = CliRunner().invoke(cli, ["image2", str(path), "-o", str(tmp_path / "out")])
        assert result.exit_code == 1 and "lies outside the association's directory" in \
            result.output, result.output
    assert not (tmp_path / "out").exists() and not list(outside.iterdir())


def test_profiles_cannot_import_code_or_redirect_output(sim, tmp_path):
    """class/name/config_file/hooks (stpipe imports what they name) and output_dir (writes
    around OUTDIR) are refused in profiles and --set; YAML tags never construct objects."""
    sentinel = tmp_path / "PWNED"
    profile = tmp_path / "evil.yaml"
    profile.write_text(
        "image2:\n"
        f"  description: !!python/object/apply:os.system ['touch {sentinel}']\n"
        "  class: os.system\n"
        "  steps:\n"
        "    resample:\n"
        "      name: x\n"
        "      config_file: /etc/passwd\n"
        "      output_dir: /tmp\n"
        "      pre_hooks: [os.system]\n"
    )
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o",
                                      str(tmp_path / "out"), "--profile", str(profile)])
    assert result.exit_code == 1
    assert "is not allowed" in result.output  # the tag stops parsing before anything else
    assert not sentinel.exists()
    profile.write_text("image2:\n  class: os.system\n  steps:\n    resample:\n      name: x\n"
                       "      config_file: /etc/passwd\n      output_dir: /tmp\n"
                       "      post_hooks: [os.system]\n")
    check = CliRunner().invoke(cli, ["profiles", "check", str(profile)])
    assert check.exit_code == 1
    for key in ("class", "name", "config_file", "output_dir", "post_hooks"):
        assert f"'{key}' is refused" in check.output, check.output
    for setting in ("class=jwst.x.Y", "steps.resample.config_file=/etc/passwd",
                    "steps.resample.output_dir=/tmp", "steps.flat_field.pre_hooks=os.system"):
        result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o",
                                          str(tmp_path / "out"), "--set", setting])
        assert result.exit_code == 1 and "is refused" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_yaml_is_parsed_with_the_safe_loader(tmp_path):
    """Every YAML parser in jwstrun is yaml.SafeLoader or built on it: profiles (composed
    with SafeLoader, tags refused) and the ASDF trees jwstrun.validate reads from products
    (a tag-agnostic SafeLoader subclass that only builds dicts, lists and strings)."""
    import re

    import jwstrun
    from jwstrun.validate._asdf import _parse_asdf_bytes

    package = Path(jwstrun.__file__).parent
    problems = []
    for source in package.rglob("*.py"):
        text = source.read_text()
        for bad in ("Loader=yaml.Loader", "FullLoader", "UnsafeLoader", "unsafe_load",
                    "full_load", "yaml.Loader("):
            if bad in text:
                problems.append(f"{source.name}: {bad}")
        for call in re.findall(r"yaml\.(?:load|load_all|compose)\(([^)]*)\)", text):
            if "Loader=" not in call:
                problems.append(f"{source.name}: yaml call without an explicit Loader: {call}")
        if "yaml.load(" in text and "SafeLoader" not in text:
            problems.append(f"{source.name}: yaml.load with a loader not built on SafeLoader")
    assert problems == []
    sentinel = tmp_path / "PWNED"
    tree = _parse_asdf_bytes(
        b"#ASDF 1.0.0\n%YAML 1.1\n--- !core/asdf-1.1.0\n"
        + f"x: !!python/object/apply:os.system ['touch {sentinel}']\n".encode() + b"...\n"
    )
    assert tree["x"] == [f"touch {sentinel}"] and not sentinel.exists()


def test_manifest_records_no_environment(sim, reference):
    """The manifest carries versions, parameters and the CRDS settings the workers had
    (what jwstrun reproduce needs: CRDS_PATH, CRDS_SERVER_URL, CRDS_CONTEXT, in each run
    entry's ``crds``), not the environment."""
    text = (reference["outdir"] / "jwstrun-manifest.json").read_text()
    for name in ("PATH", "HOME", "PYTHONPATH"):
        assert f'"{name}"' not in text
    for run in json.loads(text)["runs"]:
        assert set(run["crds"]) <= {"CRDS_PATH", "CRDS_SERVER_URL", "CRDS_CONTEXT"}
        assert set(run["environment"]) <= {"STPIPE_DISABLE_CRDS_STEPPARS"}
    args = image2_args(sim, reference["outdir"])
    assert all(str(a) in text for a in args[1:2])  # the command is recorded
