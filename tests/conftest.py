"""Test-suite wide fixtures."""

from __future__ import annotations

import os

import pytest


def _restore(saved: dict) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands run in-process (CliRunner) may set CRDS_* variables the way a real
    ``jwstrun`` process does for its whole life; give every test the environment
    it started with so that one test's CRDS cache or context never leaks into the next."""
    saved = dict(os.environ)
    yield
    _restore(saved)


@pytest.fixture(scope="module", autouse=True)
def _restore_module_environment():
    """The same for module-scoped fixtures (they run before a test's own snapshot):
    autouse fixtures come first in their scope, so this one sees the module's start."""
    saved = dict(os.environ)
    yield
    _restore(saved)
