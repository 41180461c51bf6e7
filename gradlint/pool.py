"""Running one function over many files: serially for a handful, else over a process pool.

Generic: it knows nothing of linting. `run(items, work, ...)` calls `work(item)` for every item
(in pool workers through `worker_call`, after `initializer(*initargs)` ran once per worker) and
returns the results in completion order. If the pool breaks (a worker killed, e.g. by the
out-of-memory killer), the items it did not finish run here, serially. Also the memory
housekeeping a long-lived worker needs after a large file.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

# Below this many items a process pool costs more than it saves.
SERIAL_BELOW = 8

# Allocations between young-generation collections while items are worked on (CPython's default
# is 700). A LibCST tree is hundreds of thousands of objects without reference cycles, built and
# dropped per file: at the default, the collector walks the live tree over and over while it is
# built. Measured on the 134 files of torch's sources that reach LibCST: 31.7 -> 26.6 CPU s (the
# parses 18.5 -> 13.3), peak memory 372 -> 388 MB. (mypy raises its threshold for the same reason.)
YOUNG_COLLECTION_EVERY = 100_000


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def chunks(items: List[str], jobs: int) -> List[List[str]]:
    """Items in chunks small enough to balance `jobs` workers, large enough to amortise calls."""
    size = max(1, min(32, len(items) // (jobs * 4) or 1))
    return [items[i:i + size] for i in range(0, len(items), size)]


def run(
    items: List[str],
    jobs: int,
    chunk_work: Callable[[Sequence[str]], List[T]],
    serial_work: Callable[[str], T],
    key: Callable[[T], str],
    *,
    initializer: Optional[Callable[..., None]] = None,
    initargs: Tuple[Any, ...] = (),
    progress: Optional[Callable[[int, int], None]] = None,
    crashed: Optional[Callable[[str], T]] = None,
) -> List[T]:
    """`serial_work(item)` for each item, here when `jobs` is 1 or there are few items, else
    `chunk_work(chunk)` in pool workers (a picklable module-level function; `initializer` sets
    up each worker; workers exit with this process). `key(result)` names the item a result
    belongs to. If the pool breaks, unfinished items run again; `crashed(item)` is the result
    of an item whose worker dies on it alone (default: run it here). `progress(done, total)`
    after each item or chunk."""
    if jobs == 1 or len(items) < SERIAL_BELOW:
        out: List[T] = []
        with _batch_collection():
            for done, item in enumerate(items, 1):
                out.append(serial_work(item))
                if progress:
                    progress(done, len(items))
        return out
    return _in_pool(items, jobs, chunk_work, serial_work, key, initializer, initargs, progress, crashed)


def _in_pool(items, jobs, chunk_work, serial_work, key, initializer, initargs, progress, crashed=None) -> list:
    """Items over a pool. A pool that breaks (a worker killed by a signal: a segfault, the
    out-of-memory killer) is replaced: the unfinished items run again one per task, and an item
    whose worker dies on its own is `crashed(item)` (or, without that, run here)."""
    # imported here, not at the top: a one-file run (`gradlint run`, the editor) never starts a pool
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    outcomes: list = []
    finished: set = set()

    def record(part: list) -> None:
        outcomes.extend(part)
        finished.update(key(o) for o in part)
        if progress:
            progress(len(finished), len(items))

    def attempt(parts: List[List[str]], workers: int) -> bool:
        import multiprocessing

        context = multiprocessing.get_context()
        try:
            # a fresh lock per pool: one a killed worker held dies with its pool
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                     initargs=(os.getpid(), context.Lock(), initializer, initargs)) as pool:
                futures = [pool.submit(chunk_work, chunk) for chunk in parts]
                for future in as_completed(futures):
                    record(future.result())
            return True
        except (BrokenProcessPool, OSError):
            return False

    parts = chunks(items, jobs)
    if attempt(parts, min(jobs, len(parts))):
        return outcomes
    rest = [[item] for item in items if item not in finished]
    if rest and not attempt(rest, min(jobs, len(rest))):
        for item in items:  # alone, so a worker that dies names its item
            if item in finished:
                continue
            if not attempt([[item]], 1):
                record([crashed(item) if crashed is not None else serial_work(item)])
    return outcomes


@contextlib.contextmanager
def _batch_collection() -> Iterator[None]:
    """Young-generation collections every YOUNG_COLLECTION_EVERY allocations inside the block
    (the thresholds before it are restored after)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_COLLECTION_EVERY), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _start_worker(parent: int, large: Any, initializer: Optional[Callable[..., None]],
                  initargs: Tuple[Any, ...]) -> None:
    global _LARGE
    die_with_parent(parent)
    _LARGE = large
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], YOUNG_COLLECTION_EVERY), *threshold[1:])  # a worker only works on items
    if initializer is not None:
        initializer(*initargs)


# -------------------------------------------------------------------------------- large items
# A LibCST tree takes ~400 bytes per character of source, so two workers each analysing one of
# torch's largest test files held over 500 MB between them. An item whose work needs that much
# (the caller says so, by `large_item`) runs while no other worker of the pool runs one: a worker
# that meets one while another is busy with one puts it after the rest of its chunk (`Later`),
# and waits its turn only there.
LARGE_ITEM_CHARS = 150_000  # characters of source from which an analysis counts as large
LARGE_WAIT_S = 600.0  # at most this long for the turn; then it runs anyway (memory before a hang)

_LARGE: Any = None  # in a pool worker: the pool's lock for large items
_may_put_off = True  # while an item may still be put off (False for the put-off ones)


class Later(BaseException):
    """The item needs a large analysis while another worker runs one: do it after the others.
    A BaseException, so the handlers that turn a file's failure into a message let it through."""


@contextlib.contextmanager
def large_item(chars: int) -> Iterator[None]:
    """Around work on an item of `chars` characters: from LARGE_ITEM_CHARS on, in a pool worker,
    it runs only while no other worker of the pool runs one. Raises Later when the item may be
    put off (see `work_through`); else waits (at most LARGE_WAIT_S)."""
    lock = _LARGE
    if lock is None or chars < LARGE_ITEM_CHARS:
        yield
        return
    if _may_put_off:
        held = lock.acquire(False)
        if not held:
            raise Later
    else:
        held = lock.acquire(True, LARGE_WAIT_S)
    try:
        yield
    finally:
        if held:
            lock.release()


def work_through(items: Sequence[str], work: Callable[[str], T]) -> List[T]:
    """`work(item)` for each item, in order, except items put off by `Later`: those run last,
    each waiting for its turn at a large analysis."""
    global _may_put_off
    done: List[T] = []
    later = []
    for item in items:
        try:
            done.append(work(item))
        except Later:
            later.append(item)
    if later:
        _may_put_off = False
        try:
            done.extend(work(item) for item in later)
        finally:
            _may_put_off = True
    return done


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when its parent `parent` dies (even by `kill -9`), so no
    orphaned worker keeps running: Linux's PR_SET_PDEATHSIG, else a thread polling getppid."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    import threading
    import time

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="gradlint-parent-watch", daemon=True).start()


# A LibCST tree takes ~400 bytes per character of source: after a file this large, the freed
# tree is handed back to the system, or a pool worker keeps the peak of its largest file for
# the rest of the run (measured on torch: 196 MB -> 45 MB after distributed_test.py).
RELEASE_AFTER_CHARS = 100_000


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's malloc_trim, or None where there is none (macOS, Windows, musl)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's, if glibc
        return trim
    except (OSError, AttributeError, ImportError):
        return None


def release_memory() -> None:
    """Return free heap pages to the system (CPython frees the tree; glibc keeps its pages)."""
    trim = _malloc_trim()
    if trim is not None:
        try:
            trim(0)
        except Exception:  # never let memory housekeeping fail a file
            pass
