"""Recording the warm-run manifest that gradlint/warm.py replays.

`gradlint/__main__.py` starts a `Recorder` for a `check` that the fast path could not answer:
it notes the start time, tees stdout and stderr (every byte still goes out as before; the
progress counter is left out, it only redraws a terminal line), and `check` hands it what the
run consulted. When the run exits, `finish` writes a manifest only when all of these hold:

- the run used the result cache, reported on stdout or stderr only, in a format without side
  effects (not `github`, which appends to $GITHUB_STEP_SUMMARY), and took none of --fix, --diff,
  --add-noqa, stdin, a baseline, -o (`check` decides, from the parsed options);
- every file was checked without an error, and the files its findings depend on are known;
- no watched path changed while the run went on, and each watched path's ctime is at least
  `MARGIN_NS` older than the run's start. That is the "racy timestamp" rule (git's racy-git
  problem): a later edit of a path gets a ctime of at least the run's start, so it can never
  leave the stat recorded here unchanged, even on a file system with coarse timestamps (FAT: 2 s);
  a path edited shortly before the run is simply recorded by a later run. A path recorded as
  absent is trusted only where its folder is watched, or where the first folder above it that
  exists is itself older than the margin (so the path was absent for the whole run).

Which paths are watched (and why that covers what the output depends on) is listed in
gradlint/warm.py. Anything that goes wrong here only means no manifest: never an error.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gradlint import warm
from gradlint.discovery import PROJECT_LISTING, project_python_files

MARGIN_NS = 2_500_000_000  # 2 s timestamp granularity (FAT) plus the kernel's coarse clock
MAX_MANIFESTS = 32  # per cache folder: the oldest go first (pre-commit passes new file lists)

# Read (when present) in every folder the configuration, .gitignore or repository search visits.
FOLDER_FILES = ("pyproject.toml", ".gitignore")
GIT_FILES = (os.path.join(".git", "info", "exclude"), os.path.join(".git", "config"))
LIBRARIES = ("click", "libcst", "pathspec", "tomli")

_ACTIVE: List["Recorder"] = []


def active() -> Optional["Recorder"]:
    """The recorder of this process's `check`, if one runs."""
    return _ACTIVE[0] if _ACTIVE else None


def uncaptured(stream):
    """The real stream behind a recorded one (the progress counter is not part of a manifest)."""
    return getattr(stream, "gradlint_real", stream)


class _Tee(io.BufferedIOBase):
    """A binary stream that writes to the real one and logs (fd, bytes) in order."""

    def __init__(self, real, fd: int, log: List[Tuple[int, bytes]]) -> None:
        super().__init__()
        self._real = real
        self._fd = fd
        self._log = log

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        self._real.write(data)
        self._log.append((self._fd, data))
        return len(data)

    def flush(self) -> None:
        if not self.closed:
            self._real.flush()

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    def close(self) -> None:  # never closes the real stream (see Recorder.restore)
        try:
            self.flush()
        except (OSError, ValueError):
            pass
        super().close()


def _text_stream(real: Any, fd: int, log: List[Tuple[int, bytes]]) -> Any:
    """A text stream like `real` (encoding, errors, newlines, buffering) over a _Tee."""
    tee: Any = _Tee(real.buffer, fd, log)
    wrapper: Any = io.TextIOWrapper(tee, encoding=real.encoding, errors=real.errors,
                               newline=None if os.name == "nt" else "\n", line_buffering=real.line_buffering,
                               write_through=True)
    wrapper.gradlint_real = real
    return wrapper


def _first_existing_folder(path: str) -> Optional[tuple]:
    here = os.path.dirname(os.path.abspath(path))
    while True:
        found = warm.probe(here)
        if found is not None:
            return found
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


class Recorder:
    """Collects what one `check` run consulted and printed; `finish` writes the manifest."""

    def __init__(self, argv: Sequence[str], key: bytes) -> None:
        self.argv = list(argv)
        self.key = key
        self.started = time.time_ns()
        self.log: List[Tuple[int, bytes]] = []
        self.trace: Dict[str, List[str]] = {}  # filled by discovery: folders walked, links met
        self.outer: Dict[str, object] = {}  # watched before anything was read (see `snapshot`)
        self.run: Optional[dict] = None  # what `check` noted; None: no manifest for this run
        self._real: Tuple[Any, Any] = (sys.stdout, sys.stderr)
        self._installed = False
        self.failed = False

    # -- streams ----------------------------------------------------------------------------

    def install(self) -> None:
        out, err = self._real
        try:
            mine = _text_stream(out, 1, self.log), _text_stream(err, 2, self.log)
        except (AttributeError, TypeError, ValueError, OSError, LookupError):
            return  # not standard streams: nothing is recorded, so no manifest
        sys.stdout, sys.stderr = mine
        self._installed = True

    def restore(self) -> bool:
        """Put the real streams back; False when the recorded ones failed (a broken pipe, closed)."""
        if not self._installed:
            return False
        ok = True
        streams: Tuple[Any, Any] = (sys.stdout, sys.stderr)
        for mine, real in zip(streams, self._real):
            if uncaptured(mine) is mine or uncaptured(mine) is not real:
                ok = False  # replaced by someone else meanwhile: what it printed is unknown
                continue
            try:
                if mine.closed:  # e.g. closed after a broken pipe: close the real one, as without us
                    ok = False
                    real.close()
                else:
                    mine.flush()
                    mine.detach()
            except (OSError, ValueError):
                ok = False
        sys.stdout, sys.stderr = self._real
        self._installed = False
        return ok

    # -- what the run consulted -----------------------------------------------------------

    def snapshot(self, given: Sequence[str]) -> None:
        """Before any configuration is read: the files the configuration, .gitignore and repository
        searches may read in the current folder, the named paths and every folder above them."""
        try:
            self._snapshot(given)
        except Exception:  # e.g. the current folder was removed: no manifest for this run
            self.outer.clear()
            self.failed = True

    def _snapshot(self, given: Sequence[str]) -> None:
        folders = set()
        starts = [os.path.abspath(p) for p in given]
        for start in [os.getcwd()] + [p if os.path.isdir(p) else os.path.dirname(p) for p in starts]:
            here = start
            while here not in folders:
                folders.add(here)
                parent = os.path.dirname(here)
                if parent == here:
                    break
                here = parent
        home = os.path.expanduser("~")
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        paths: List[Optional[str]] = [os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig"),
                                      os.path.join(xdg, "git", "ignore")]
        for folder in sorted(folders):
            paths += [os.path.join(folder, name) for name in FOLDER_FILES + GIT_FILES]
            if os.path.exists(os.path.join(folder, ".git")):
                self.outer[os.path.join(folder, ".git")] = True
                paths.append(_excludes_file(folder))
            else:
                self.outer[os.path.join(folder, ".git")] = None
        for path in paths:
            if path:
                self.outer[path] = warm.probe(path)

    def note(self, given: Sequence[str], files: Sequence[str], settings, result) -> None:
        """`check` ran to its report under conditions a manifest may stand for (see the module)."""
        if self.failed or result.errors or result.dependencies is None:
            return
        self.run = {"given": list(given), "files": list(files), "settings": settings,
                    "dependencies": sorted(result.dependencies)}

    # -- the manifest -----------------------------------------------------------------------

    def _watched(self) -> Tuple[Dict[str, str], Dict[str, object]]:
        """path -> "must" (present), "may" (absence allowed), "if-present"; plus the outer snapshot."""
        assert self.run is not None
        kinds: Dict[str, str] = {}
        for path in self.run["given"] + self.run["files"] + self.trace.get("folders", []):
            kinds[path] = "must"
        # a dependency that is itself linted is watched already (under the name it was linted by)
        linted = {os.path.abspath(f) for f in self.run["files"] if os.pardir not in f.split(os.sep)}
        for path in self.run["dependencies"]:
            if path.startswith(PROJECT_LISTING):  # which files the project holds: its folders' mtimes
                for folder in project_python_files(path[len(PROJECT_LISTING):])[1]:
                    kinds.setdefault(folder, "must")
            elif os.path.abspath(path) not in linted:
                kinds.setdefault(path, "must")
        for path in self.trace.get("links", []):
            kinds.setdefault(path, "may")
        for folder in self.trace.get("folders", []):
            for name in FOLDER_FILES:  # absent ones: a new one changes the folder's mtime
                kinds.setdefault(os.path.join(folder, name), "if-present")
            if os.path.exists(os.path.join(folder, ".git")):
                for name in GIT_FILES:
                    kinds.setdefault(os.path.join(folder, name), "may")
                excludes = _excludes_file(folder)
                if excludes:
                    kinds.setdefault(excludes, "may")
        settings = self.run["settings"]
        if getattr(settings, "config_path", None):
            kinds.setdefault(settings.config_path, "must")
        for path in _own_files() + _library_files():
            kinds.setdefault(path, "must")
        for path in self.outer:
            kinds.pop(path, None)
        return kinds, self.outer

    def manifest(self, status: int) -> Optional[bytes]:
        """The manifest's bytes, or None when this run may not stand for the next (see the module)."""
        if self.run is None or not isinstance(status, int) or not 0 <= status <= 255:
            return None
        kinds, outer = self._watched()
        limit = self.started - MARGIN_NS
        paths: List[str] = []
        wants: List[object] = []
        for path, before in outer.items():
            now: object = warm.probe(path)
            if before is True:
                now = True if now is not None else None
            if now != before:
                return None  # changed while the run went on
            paths.append(path)
            wants.append(before)
        for path, kind in kinds.items():
            found = warm.probe(path)
            if found is None:
                if kind == "must":
                    return None
                if kind == "if-present":
                    continue
                folder = _first_existing_folder(path)
                if folder is None or folder[1] >= limit:
                    return None  # it may have existed (and been read) during the run
            paths.append(path)
            wants.append(found)
        for want in wants:
            if isinstance(want, tuple) and want[1] >= limit:
                return None  # racy: changed too recently to be told apart from a later edit
        chunks: List[Tuple[int, List[bytes]]] = []
        for fd, data in self.log:  # consecutive writes to one stream become one chunk
            if chunks and chunks[-1][0] == fd:
                chunks[-1][1].append(data)
            elif data:
                chunks.append((fd, [data]))
        return warm.pack(self.key, paths, wants, [(fd, b"".join(parts)) for fd, parts in chunks], status)

    def finish(self, status) -> None:
        """Restore the streams; write the manifest when this run may stand for the next."""
        intact = self.restore()
        _ACTIVE.clear()
        if not intact or self.run is None:
            return
        if status is None:
            status = 0
        try:
            blob = self.manifest(status)
            if blob is not None:
                _write(self.argv, self.run["settings"], self.key, blob)
        except Exception:  # a manifest is only an optimisation
            pass


def start(argv: Sequence[str], key: bytes) -> Recorder:
    """Begin recording this process's `check` (called before click parses the command line)."""
    recorder = Recorder(argv, key)
    recorder.install()
    _ACTIVE[:] = [recorder]
    return recorder


# ---------------------------------------------------------------------------------------------


def _excludes_file(repo: str) -> Optional[str]:
    from gradlint.discovery import global_excludes_file

    try:
        return global_excludes_file(repo)
    except (OSError, ValueError):
        return None


def _own_files() -> List[str]:
    """gradlint's sources and folders (an edited or added module changes what a run prints)."""
    out = []
    for folder, subfolders, files in os.walk(warm.package_folder()):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        out.append(folder)
        out += [os.path.join(folder, name) for name in sorted(files) if name.endswith(".py")]
    return out


def _library_files() -> List[str]:
    """The modules of the libraries a check runs on (an upgrade replaces them)."""
    import importlib.util

    out = []
    for name in LIBRARIES:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            origin = spec.origin if spec is not None else None
        if origin:
            out.append(origin)
    return out


def _write(argv: Sequence[str], settings, key: bytes, blob: bytes) -> None:
    from gradlint.atomic import write_atomic

    top = os.path.abspath(settings.cache_path)
    if top not in [os.path.abspath(f) for f in warm.cache_folders(argv, os.getcwd())]:
        return  # the fast path would not look there (a configured cache-dir): not worth writing
    folder = os.path.join(top, warm.FOLDER)
    os.makedirs(folder, exist_ok=True)
    ignore = os.path.join(top, ".gitignore")
    if not os.path.exists(ignore):
        write_atomic(ignore, b"# Automatically created by gradlint.\n*\n")
    write_atomic(os.path.join(folder, warm.manifest_name(key)), blob)
    try:
        names = [os.path.join(folder, n) for n in os.listdir(folder) if not n.startswith(".")]
        if len(names) > MAX_MANIFESTS:
            names.sort(key=lambda p: os.stat(p).st_mtime_ns)
            for path in names[:-MAX_MANIFESTS]:
                os.unlink(path)
    except OSError:
        pass
