"""What a simulated program wrote (its ``simulation.json`` summary), and its file names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SimulationResult", "load_simulation", "ENV_FILE", "TRUTH_FILE", "POINTING_FILE",
           "COSMIC_RAY_FILE", "SUMMARY_FILE"]

ENV_FILE = "crds.env"
TRUTH_FILE = "truth_sources.ecsv"
POINTING_FILE = "truth_pointing.ecsv"
COSMIC_RAY_FILE = "truth_cosmic_rays.ecsv"
SUMMARY_FILE = "simulation.json"


@dataclass
class SimulationResult:
    """What :func:`simulate_program` wrote."""

    outdir: Path
    rate_files: list[Path]
    background_files: list[Path]
    truth_file: Path
    pointing_file: Path
    cosmic_ray_file: Path
    crds_path: Path
    crds_context: str
    env_file: Path
    env: dict[str, str]
    seconds: float = 0.0
    groups: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    #: what ``extras`` wrote: TA, grism and _uncal files (jwstrun.simulate.extras)
    extra_files: list[Path] = field(default_factory=list)
    #: what ``effects`` wrote: truth files and _jump files (jwstrun.simulate.effects)
    effect_files: list[Path] = field(default_factory=list)
    #: the field's Gaia-like reference catalogue (jwstrun.simulate.refcat)
    refcat_file: Path | None = None
    #: with ``uncal``: the _uncal files and their truth (jwstrun.simulate.ramps)
    uncal_files: list[Path] = field(default_factory=list)
    uncal_truth_files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {
            "outdir": str(self.outdir),
            "rate_files": [str(p) for p in self.rate_files],
            "background_files": [str(p) for p in self.background_files],
            "truth_file": str(self.truth_file),
            "pointing_file": str(self.pointing_file),
            "cosmic_ray_file": str(self.cosmic_ray_file),
            "crds_path": str(self.crds_path),
            "crds_context": self.crds_context,
            "env_file": str(self.env_file),
            "env": self.env,
            "seconds": round(self.seconds, 2),
            "groups": self.groups,
            "options": self.options,
        }
        if self.extra_files:  # the summary of a program without extras stays as it was
            data["extra_files"] = [str(p) for p in self.extra_files]
        if self.effect_files:
            data["effect_files"] = [str(p) for p in self.effect_files]
        if self.refcat_file:
            data["refcat_file"] = str(self.refcat_file)
        if self.uncal_files:
            data["uncal_files"] = [str(p) for p in self.uncal_files]
            data["uncal_truth_files"] = [str(p) for p in self.uncal_truth_files]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SimulationResult:
        paths = ("outdir", "truth_file", "pointing_file", "cosmic_ray_file", "crds_path", "env_file")
        return cls(
            **{k: Path(data[k]) for k in paths},
            rate_files=[Path(p) for p in data["rate_files"]],
            background_files=[Path(p) for p in data["background_files"]],
            crds_context=data["crds_context"],
            env=dict(data["env"]),
            seconds=float(data.get("seconds", 0.0)),
            groups=list(data.get("groups", [])),
            options=dict(data.get("options", {})),
            extra_files=[Path(p) for p in data.get("extra_files", [])],
            effect_files=[Path(p) for p in data.get("effect_files", [])],
            refcat_file=Path(data["refcat_file"]) if data.get("refcat_file") else None,
            uncal_files=[Path(p) for p in data.get("uncal_files", [])],
            uncal_truth_files=[Path(p) for p in data.get("uncal_truth_files", [])],
        )


def load_simulation(outdir, **expected_options) -> SimulationResult | None:
    """The result of an earlier :func:`simulate_program` in ``outdir``, or None.

    None also when any of ``expected_options`` differs from what was simulated or
    a file the summary lists is missing (the simulation has to be redone).
    """
    summary = Path(outdir) / SUMMARY_FILE
    try:
        result = SimulationResult.from_dict(json.loads(summary.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for key, value in expected_options.items():
        if key in ("detectors", "filters", "extras", "effects"):
            value = list(value)
        if key in ("extras", "effects") and not value:
            value = None  # a program without extras or effects does not list them
        if key == "subarray":
            value = str(value).upper()
        if result.options.get(key) != value:
            return None
    needed = [*result.rate_files, *result.background_files, *result.extra_files,
              *result.effect_files, *result.uncal_files, *result.uncal_truth_files,
              result.truth_file, result.env_file]
    if not all(Path(p).is_file() for p in needed):
        return None
    return result
