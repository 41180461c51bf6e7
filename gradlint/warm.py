"""The warm-run fast path: answer `gradlint check` from a whole-run manifest, before click,
LibCST or the engine are imported.

A `check` that used the result cache ends by writing a *manifest* into the cache folder
(gradlint/warm_record.py). It holds:

- the run's key: the command line, the current folder, the environment variables the output can
  depend on (GRADLINT_*, PYTHON*, LIBCST_*, GITHUB_*, CI*, colour and locale, HOME), whether stdout
  and stderr are terminals and their encodings, and the Python that runs (version, executable,
  sys.path, flags and -W options, where gradlint lives);
- the watched paths, each with what `os.stat` said of it (mtime_ns, ctime_ns, size, inode,
  device) or that it was absent: every file linted, every folder walked (adding, removing or
  renaming an entry changes a folder's mtime), the symbolic links met there, the configuration
  and ignore files that were or could have been read (pyproject.toml, .gitignore, .git/info/exclude,
  git's excludes file) in those folders and above, the helper modules other files' findings depend
  on (as the result cache records them), gradlint's own sources and the libraries it runs on;
- the exact bytes written to stdout and stderr, in order, and the exit status.

`serve` recomputes the key, stats every watched path and, only when all match, writes the stored
bytes and returns the stored status. No manifest, another key, any path changed, a truncated or
corrupt file: None, and the normal run goes on exactly as it would without this module. What makes
this safe, and which runs write a manifest, is explained in gradlint/warm_record.py.

Not on Windows, whose st_ctime is the creation time (an edit that keeps size and mtime could not
be told). Only os, sys, marshal and zlib are imported here: the point is to answer before anything
heavy loads.
"""

from __future__ import annotations

import marshal
import os
import sys

MYPY = False
if MYPY:  # for the type checker only: importing typing costs a warm run milliseconds
    from typing import Any, List, Optional, Sequence, Tuple

MAGIC = b"gradlint-manifest 1\n"
FOLDER = "manifests"  # inside the cache folder
DEFAULT_CACHE_DIR = ".gradlint_cache"  # as gradlint.config.DEFAULT_CACHE_DIR (not imported: start-up)

# Environment variables a check's output can depend on (gradlint's own, click's envvars, the
# reporters' CI variables, colour, Python's and LibCST's switches, git's config location).
ENV_NAMES = frozenset(("FORCE_COLOR", "NO_COLOR", "TERM", "HOME", "USERPROFILE", "XDG_CONFIG_HOME", "LANG",
                       "LANGUAGE", "CI", "COLUMNS"))
ENV_PREFIXES = ("GRADLINT_", "PYTHON", "LIBCST_", "GITHUB_", "CI_", "LC_")

# Options after which a manifest is never written (they write files, read stdin or a baseline,
# or skip the cache): a run naming one does not even look for a manifest.
NEVER = frozenset(("-", "--fix", "--diff", "--add-noqa", "--no-cache", "-o", "--output", "--stdin-filename",
                   "--baseline", "--write-baseline", "--exit-non-zero-on-fix", "-h", "--help"))


def _stream_facts(stream) -> Optional[Tuple[bool, str, str]]:
    """(is a terminal, encoding, errors) of a standard stream that has a binary buffer to replay into."""
    try:
        if stream.buffer is None:
            return None
        return bool(stream.isatty()), str(stream.encoding), str(stream.errors)
    except (AttributeError, ValueError, OSError):
        return None


def package_folder() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def run_key(argv: Sequence[str]) -> Optional[bytes]:
    """Everything besides the watched paths that a `check`'s output depends on, as bytes; None
    when this run cannot be served or recorded (odd streams, no current folder, an option that
    writes files or reads stdin)."""
    if not argv or argv[0] != "check" or os.name == "nt":  # Windows' st_ctime is the creation time
        return None
    for arg in argv[1:]:
        if arg in NEVER or arg.startswith(("--output=", "--baseline=", "--write-baseline=", "--stdin-filename=")):
            return None
        if arg.startswith("-") and not arg.startswith("--") and "o" in arg[1:]:
            return None  # -oFILE, -qo FILE
    out, err = _stream_facts(sys.stdout), _stream_facts(sys.stderr)
    if out is None or err is None:
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    env = sorted((k, v) for k, v in os.environ.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES))
    described = (MAGIC, tuple(argv), cwd, tuple(env), out, err, sys.version, sys.executable, tuple(sys.path),
                 tuple(sys.flags), tuple(sys.warnoptions), package_folder())
    # repr, not marshal: equal values always give equal text (marshal's back-references do not)
    return repr(described).encode("utf-8", "backslashreplace")


def manifest_name(key: bytes) -> str:
    import zlib

    return f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


def cache_folders(argv: Sequence[str], cwd: str) -> List[str]:
    """Where a manifest for `argv` may lie: the cache folder(s) the run would use, guessed without
    reading any configuration (--cache-dir, $GRADLINT_CACHE_DIR, --isolated, --config, else beside
    each pyproject.toml above the current folder, else in it). A wrong guess only misses: the
    manifest's own key decides, and the recorder writes only where this function looks."""
    explicit = config = None
    isolated = False
    args = list(argv[1:])
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            break
        if arg in ("--cache-dir", "--config") and index + 1 < len(args):
            if arg == "--cache-dir":
                explicit = args[index + 1]
            else:
                config = args[index + 1]
            index += 2
            continue
        if arg.startswith("--cache-dir="):
            explicit = arg.split("=", 1)[1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg == "--isolated":
            isolated = True
        index += 1
    if not explicit:
        explicit = os.environ.get("GRADLINT_CACHE_DIR") or None
    if explicit:
        return [os.path.abspath(os.path.join(cwd, explicit))]
    if isolated:
        return [os.path.join(cwd, DEFAULT_CACHE_DIR)]
    if config:
        return [os.path.join(os.path.dirname(os.path.abspath(os.path.join(cwd, config))), DEFAULT_CACHE_DIR)]
    folders = []
    here = cwd
    while True:
        if os.path.isfile(os.path.join(here, "pyproject.toml")):
            folders.append(os.path.join(here, DEFAULT_CACHE_DIR))
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    fallback = os.path.join(cwd, DEFAULT_CACHE_DIR)
    return folders + ([fallback] if fallback not in folders else [])


def probe(path: str):
    """What a manifest records of a path: (mtime_ns, ctime_ns, size, inode, device), or None when
    it cannot be stat'ed (absent, not a folder on the way, no permission: as gradlint sees it)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def pack(key: bytes, paths: Sequence[str], wants: Sequence[Any], chunks: Sequence[Tuple[int, bytes]],
         status: int) -> bytes:
    """A manifest file's bytes: MAGIC, the crc32 of the payload (8 hex digits and a newline), the
    payload (marshal). `wants[i]` is `probe(paths[i])`, or True where only existence counts."""
    import zlib

    payload = marshal.dumps((key, tuple(paths), tuple(wants), tuple(chunks), status))
    return MAGIC + b"%08x\n" % zlib.crc32(payload) + payload


def unpack(blob: bytes) -> Optional[tuple]:
    """(key, paths, wants, chunks, status) from a manifest file's bytes, or None when it is not
    one gradlint wrote whole (another format, truncated, corrupt)."""
    import zlib

    start = len(MAGIC) + 9
    if not blob.startswith(MAGIC) or len(blob) < start or blob[start - 1:start] != b"\n":
        return None
    try:
        if int(blob[len(MAGIC):start - 1], 16) != zlib.crc32(blob[start:]):
            return None
        data = marshal.loads(blob[start:])
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(data, tuple) or len(data) != 5:
        return None
    key, paths, wants, chunks, status = data
    if not (isinstance(key, bytes) and isinstance(paths, tuple) and isinstance(wants, tuple)
            and len(paths) == len(wants) and all(isinstance(p, str) for p in paths)
            and isinstance(chunks, tuple) and isinstance(status, int) and 0 <= status <= 255):
        return None
    for chunk in chunks:
        if not (isinstance(chunk, tuple) and len(chunk) == 2 and chunk[0] in (1, 2) and isinstance(chunk[1], bytes)):
            return None
    return data


def unchanged(paths: Sequence[str], wants: Sequence[object]) -> bool:
    """Does every watched path still stat as recorded? (A few microseconds a path.)"""
    stat = os.stat
    for path, want in zip(paths, wants):
        try:
            st = stat(path)
        except (OSError, ValueError):
            if want is None:
                continue
            return False
        if want is None:
            return False
        if want is True:
            continue
        if (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev) != want:
            return False
    return True


def find(argv: Sequence[str], key: bytes) -> Optional[tuple]:
    """The unpacked manifest recorded for this exact run, if one is there and still true."""
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    name = manifest_name(key)
    for folder in cache_folders(argv, cwd):
        try:
            with open(os.path.join(folder, FOLDER, name), "rb") as handle:
                blob = handle.read()
        except OSError:
            continue
        data = unpack(blob)
        if data is not None and data[0] == key and unchanged(data[1], data[2]):
            return data
    return None


def serve(argv: Sequence[str], key: bytes) -> Optional[int]:
    """Replay a still-true manifest: its bytes to stdout/stderr, in their order; the exit status
    to use, or None (nothing written) when the normal run must go on."""
    try:
        data = find(argv, key)
    except Exception:  # whatever is wrong with a manifest, the normal run answers
        return None
    if data is None:
        return None
    try:
        for fd, chunk in data[3]:
            stream = sys.stdout if fd == 1 else sys.stderr
            stream.flush()
            stream.buffer.write(chunk)
            stream.buffer.flush()
    except BrokenPipeError:  # `gradlint check | head`: as the normal run answers it (cli._Group)
        try:
            sys.stderr.close()
        except OSError:
            pass
        return 1
    except (OSError, ValueError) as err:  # a full disk, a closed stream: one line, as cli._Group says it
        try:
            sys.stderr.write(f"gradlint: error: internal error: {type(err).__name__}: {err}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        return 2
    return data[4]
