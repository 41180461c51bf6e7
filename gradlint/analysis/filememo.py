"""Answers read off project files other than the one being linted, remembered per process.

The analyses read other project modules (callers of a function, helpers imported from a sibling
module) and derive something from each: its identifiers, the names it defines, its LibCST tree.
`FileMemo` keeps those answers by path until the file changes (its mtime and size), least recently
used first out, bounded by the number of answers and, for LibCST trees, by the total size of the
files behind them: a tree takes about 400 bytes of memory per byte of source, so 64 cached modules
of torch's size (`nn/functional.py` is 277 KB) held a gigabyte per worker.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Optional, Tuple, TypeVar

T = TypeVar("T")

MAX_FILE_BYTES = 400_000  # larger files are not read (a helper module is rarely this big)


class FileMemo:
    """path -> answer derived from the file's bytes. `entries`: at most this many answers;
    `source_bytes`: at most this many bytes of source behind them (None: no such bound). The
    newest answer is always kept, whatever its size."""

    def __init__(self, entries: int, source_bytes: Optional[int] = None) -> None:
        self.entries = entries
        self.source_bytes = source_bytes
        self._answers: "OrderedDict[str, Tuple[Tuple[int, int], object, int]]" = OrderedDict()
        self._bytes = 0

    def get(self, path: str, read: Callable[[bytes], T], unknown: T) -> T:
        """`read(the file's bytes)`, remembered until the file changes; `unknown` when the file
        cannot be read, is larger than MAX_FILE_BYTES, or `read` raises (undecodable, unparsable,
        too deep)."""
        try:
            stat = os.stat(path)
        except OSError:
            return unknown
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._answers.get(path)
        if known is not None and known[0] == stamp:
            self._answers.move_to_end(path)
            return known[1]  # type: ignore[return-value]
        answer = unknown
        if stat.st_size <= MAX_FILE_BYTES:
            try:
                with open(path, "rb") as handle:
                    answer = read(handle.read())
            except Exception:  # an unreadable or unparsable file: not known
                answer = unknown
        self._drop(path)
        self._answers[path] = (stamp, answer, stat.st_size)
        self._bytes += stat.st_size
        while len(self._answers) > 1 and (
            len(self._answers) > self.entries
            or (self.source_bytes is not None and self._bytes > self.source_bytes)
        ):
            self._drop(next(iter(self._answers)))
        return answer

    def _drop(self, path: str) -> None:
        known = self._answers.pop(path, None)
        if known is not None:
            self._bytes -= known[2]

    def clear(self) -> None:
        self._answers.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._answers)
