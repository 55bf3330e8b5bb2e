"""Checks on the paths a subcommand is given, made before any work (and before a real arm moves)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from latent_vla.base.errors import UserError


def check_output_dir(path: str | os.PathLike[str], key: str = "out") -> Path:
    """Check that ``path`` is a writable directory, or can be created as one; return it as a ``Path``.

    Nothing is left behind: the check creates and removes a temporary folder in ``path`` (or in its
    nearest existing ancestor), because ``os.access`` says yes to root even where nothing can be
    written (``/proc``, a read-only mount). ``path`` itself is not created.

    Args:
        path: the output directory the user gave.
        key: the setting that gave it (``out``, ``calibration.data``, ...), named in the message.

    Returns:
        ``Path(path)``, unchanged.

    Raises:
        UserError: ``path`` (or an ancestor) is a file, or no folder can be created there.
    """
    out = Path(path)
    if str(path).strip() == "":
        raise UserError(f"{key}= is empty; give a directory for the output")
    existing = out
    while not existing.exists() and existing != existing.parent:  # nearest existing ancestor
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == out else f" (its ancestor {existing} is a file)"
        raise UserError(f"{key}={out} is not a directory{where}; give a directory for the output")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".latent-vla-write-check-", dir=existing))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"{key}={out} is not writable: cannot create a folder in {existing} ({reason})") from None
    return out
