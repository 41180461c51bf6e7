"""How gradlint shows paths: relative to the working folder when under it (for every report,
static and runtime). Imports nothing of gradlint, so every layer may use it."""

from __future__ import annotations

import os
from typing import Optional


def display_path(path: str, cwd: Optional[str] = None) -> str:
    """Relative to `cwd` (POSIX separators) when the file lies under it, else as given."""
    cwd = os.path.abspath(cwd or os.getcwd())
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, cwd)
    except ValueError:
        return path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return rel.replace(os.sep, "/")

