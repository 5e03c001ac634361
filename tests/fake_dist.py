"""A fake installed distribution for the provider entry-point tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from fla_check.providers import ENTRY_POINT_GROUP


def install_fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: str) -> None:
    """A fake installed distribution declaring `entries` in the providers group."""
    info = tmp_path / "thirdparty_kernels-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-kernels\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
