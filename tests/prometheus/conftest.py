"""Fixtures of the bgcb-prometheus tests (helpers: prom_harness)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Path:
    """An empty directory for prometheus_client's multiprocess mode, shared by every process of one deployment."""
    directory = tmp_path / "prom"
    directory.mkdir()
    return directory
