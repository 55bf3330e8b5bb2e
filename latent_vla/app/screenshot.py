"""Render an HTML page to a PNG in headless Chromium, so a broken report is noticed as a person would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 3000, timeout_s: float = 60.0) -> Path:
    """Render ``page`` (an HTML file) to ``png`` with headless Chromium; returns ``png``.

    Raises:
        FileNotFoundError: when no Chromium is installed (``apt-get install chromium``).
        RuntimeError: when Chromium exits without writing the picture.
    """
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("headless Chromium not found; install it with `apt-get install chromium`")
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="latent-vla-chromium-") as profile:
        cmd = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--screenshot={png}", Path(page).resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-500:]}")
    return png
