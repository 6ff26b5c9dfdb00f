"""Headless Chromium for the tests that look at a page as a person would (report, operator page).

The flags keep Chromium off the network (this machine has none) and out of the user's profile.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def run_chromium(url: str, profile: Path | str, *extra: str) -> subprocess.CompletedProcess:
    """Open ``url`` headless with ``extra`` flags (``--dump-dom``, ``--screenshot=...``); fails on a crash."""
    assert CHROMIUM is not None, "chromium is not installed"
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result
