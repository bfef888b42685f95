"""What validation found: :class:`Finding` (one problem) and :class:`FileReport` (one file).

A finding is an ``error`` (the product is not what it claims to be) or a
``warning`` (suspicious, the product may still be used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ERROR", "WARNING", "Finding", "FileReport"]

ERROR = "error"
WARNING = "warning"


@dataclass
class Finding:
    """One problem found in a product.

    ``check`` is a short stable identifier (``missing-extension``, ``step-status``...)
    for scripts; ``message`` is a sentence for people that says what to do.
    """

    severity: str
    check: str
    message: str

    def to_dict(self) -> dict:
        return {"severity": self.severity, "check": self.check, "message": self.message}


@dataclass
class FileReport:
    """Everything :func:`validate_file` found about one file."""

    path: str
    product_type: str | None = None
    findings: list[Finding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def error(self, check: str, message: str) -> None:
        self.findings.append(Finding(ERROR, check, message))

    def warn(self, check: str, message: str) -> None:
        self.findings.append(Finding(WARNING, check, message))

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "product_type": self.product_type,
            "valid": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary,
            "seconds": round(self.seconds, 4),
        }
