"""Writing a file so that readers see the old content or the new, never half of it.

Used for everything gradlint writes that someone else may read at the same time or that the user
owns: fixed source files, cache entries, baselines, per-rank runtime reports.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional


def write_atomic(path: str, data: bytes, mode: Optional[int] = 0o644) -> None:
    """Write `data` to a temp file in `path`'s folder, then os.replace it over `path`.

    `mode` is applied to the temp file before the swap (mkstemp creates it 0600; a fixed source
    file keeps its own mode, a cache or baseline may be shared). On any failure the temp file is
    removed and the exception propagates; `path` is untouched.
    """
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gradlint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
