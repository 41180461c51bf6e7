"""Call sites: which frames of a call are the user's, and where exactly the call is.

A traced call (backward, clip, zero_grad) is attributed to the stack of *user* frames that led to
it: frames inside torch and gradlint are skipped, frames in the standard library and installed
packages are kept out (they cannot be joined to lint findings) unless the call has no user frame at
all. The frames' (code, instruction) chain is the cache key, so a call path's user stack is worked
out once however often it runs. The classification caches are shared by all threads (plain dict
reads and writes); each thread keeps its own path -> site cache.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from typing import Any, Dict, Optional, Tuple

from gradlint.runtime.events import BackwardSite, Observations, Stack

GRADLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_LIMIT = 64  # user frames kept per call
KEY_DEPTH = 256  # frames that identify a call path in the site cache

# Code objects of the frames that start a traced program (`gradlint run`'s call of the script), by
# id: the frames below them are the runner's, the same for every call, so a call path's key stops
# there. Keyed by id because hashing a code object hashes its contents (up to 0.5 us for a large
# function, on every frame of every traced call); the values keep those ids from being reused.
FLOOR_CODES: Dict[int, Any] = {}

# Frame file kinds.
INTERNAL, LIBRARY, USER = 0, 1, 2

Span = Tuple[int, int, int, int]


def _library_dirs() -> Tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(os.path.realpath(sysconfig.get_paths()[key]))
        except Exception:
            pass
    return tuple(sorted(d + os.sep for d in dirs))


class CallSites:
    """Finds the user call stack and exact span of the call being traced."""

    def __init__(self, torch_module: Any) -> None:
        self._torch_dir = os.path.dirname(os.path.realpath(torch_module.__file__)) + os.sep
        self._library_dirs = _library_dirs()
        self._file_kind: Dict[str, int] = {}
        self._abs: Dict[str, str] = {}
        self._lines: Dict[Tuple[Any, int], Span] = {}
        # Relative code file names (a module imported through a relative sys.path entry) name
        # files in the folder the run started in, whatever folder the script changes to later.
        try:
            self._start_dir = os.getcwd()
        except OSError:  # started in a folder that no longer exists: names stay as they are
            self._start_dir = ""

    def classify(self, filename: str) -> int:
        kind = self._file_kind.get(filename)
        if kind is not None:
            return kind
        if filename.startswith("<"):
            kind = LIBRARY
        else:
            real = os.path.realpath(os.path.join(self._start_dir, filename))
            if real.startswith(self._torch_dir) or real.startswith(GRADLINT_DIR + os.sep):
                kind = INTERNAL
            elif (real.startswith(self._library_dirs) or f"{os.sep}site-packages{os.sep}" in real
                  or f"{os.sep}dist-packages{os.sep}" in real):
                kind = LIBRARY
            else:
                kind = USER
            self._abs[filename] = real
        self._file_kind[filename] = kind
        return kind

    def position(self, frame) -> Span:
        """(line, column, end_line, end_column) of the instruction running in `frame`, 1-based."""
        code, lasti = frame.f_code, frame.f_lasti
        key = (code, lasti)
        found = self._lines.get(key)
        if found is None:
            line = frame.f_lineno or 0
            found = (line, 1, line, 1)
            positions = getattr(code, "co_positions", None)  # Python 3.11+
            if positions is not None and lasti >= 0:
                for index, pos in enumerate(positions()):
                    if index == lasti // 2:
                        if pos[0] is not None:
                            found = (pos[0], (pos[2] or 0) + 1, pos[1] or pos[0], (pos[3] or 0) + 1)
                        break
            if len(self._lines) > 100_000:
                self._lines.clear()
            self._lines[key] = found
        return found

    def stack(self, frame: Any) -> Tuple[Stack, Optional[Span]]:
        """User frames from `frame` outwards, innermost first, and the innermost call's span."""
        kinds = self._file_kind
        user: list = []
        span = None
        fallback = None
        while frame is not None and len(user) < STACK_LIMIT:
            filename = frame.f_code.co_filename
            kind = kinds.get(filename)
            if kind is None:
                kind = self.classify(filename)
            if kind != INTERNAL:
                if kind == USER:
                    pos = self.position(frame)
                    if span is None:
                        span = pos
                    user.append((self._abs[filename], pos[0]))
                elif fallback is None:
                    fallback = (self._abs.get(filename, filename), frame.f_lineno or 0)
            frame = frame.f_back
        if not user and fallback is not None:
            user.append(fallback)
        return tuple(user), span

    def site(self, kind: str, depth: int, obs: Observations, cache: dict, store: Optional[dict] = None) -> BackwardSite:
        """The record of the call `depth` frames above the caller of this method, in `obs`.

        `cache` is the calling thread's path -> site cache; `store` the dict of `obs` that holds
        sites of this kind (default: backward sites)."""
        key: list = [kind]
        frame: Any = sys._getframe(depth + 1)
        start = frame
        count = 0
        floor = FLOOR_CODES
        while frame is not None and count < KEY_DEPTH:
            code_id = id(frame.f_code)
            if code_id in floor:
                break
            key.append(code_id)
            key.append(frame.f_lasti)
            frame = frame.f_back
            count += 1
        key_t = tuple(key)
        hit = cache.get(key_t)
        if hit is not None:
            return hit[1]
        stack, span = self.stack(start)
        site = obs.site(stack, kind, store)
        if site.span is None:
            site.span = span
        # The cached code objects keep their ids from being reused while the entry exists.
        codes: list = []
        frame = start
        while frame is not None and len(codes) < count:
            codes.append(frame.f_code)
            frame = frame.f_back
        if len(cache) > 10_000:
            cache.clear()
        cache[key_t] = (codes, site)
        return site
