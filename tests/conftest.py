"""Test-suite wide fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands run in-process (CliRunner) set CRDS_* variables the way a real
    ``jwstrun`` process does for its whole life; give every test the environment
    it started with so that one test's CRDS cache or context never leaks into the next."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
