"""Which files `gradlint check PATHS` lints.

- Folders are walked recursively for `.py` and `.pyi` files (and `.ipynb` when notebook support
  is installed); files named explicitly are linted whatever their suffix.
- `exclude` (default: VCS folders, virtual envs, build output, caches; replaced by the config's
  `exclude`) and `extend-exclude` are gitignore-style patterns anchored at the settings root.
- With `respect-gitignore` (default), `.gitignore` files (nested ones too, from the repository
  root down), `.git/info/exclude` and the user's global excludes file (`core.excludesFile` from
  the repository's or the user's git config, else `$XDG_CONFIG_HOME/git/ignore`) are honoured,
  with git's precedence. Lines git ignores as invalid (`!` alone, a trailing backslash, `[z-a]`)
  are dropped, as git drops them.
- Explicitly named files and folders are linted even when excluded, unless `force-exclude` is
  set (pre-commit passes every changed file by name; ruff's `--force-exclude` convention).
- Symlinked folders are followed once: the real path of every visited folder is remembered, so a
  symlink loop never hangs.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # imported where patterns are matched (see `_spec`): start-up stays lean
    import pathspec

PYTHON_SUFFIXES = (".py", ".pyi")

# The project as the cross-file analyses see it (callers of a function, modules an import may
# resolve to): the `.py` files under the project root, outside version-control, build, dependency
# and virtual-environment folders, at most this many (beyond, those analyses give up).
MAX_PROJECT_FILES = 3000
_SKIPPED_PROJECT_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "site-packages", "__pycache__", "build",
                                   "dist"})
# A cache dependency on which files the project holds (not on their contents): the prefix, then the
# root. A file added or removed there can change what a caller search or an import finds.
PROJECT_LISTING = "<python files under> "


def _project_folder(name: str) -> bool:
    return name not in _SKIPPED_PROJECT_DIRS and not name.startswith(".") and "venv" not in name


def project_python_files(root: str) -> Tuple[List[str], List[str]]:
    """(the project's `.py` files, the folders walked for them), in walk order; the walk stops
    after the folder that takes the files past MAX_PROJECT_FILES."""
    files: List[str] = []
    folders: List[str] = []
    if os.path.isdir(root):
        for folder, dirs, names in os.walk(root):
            folders.append(folder)
            dirs[:] = sorted(d for d in dirs if _project_folder(d))
            files.extend(os.path.join(folder, name) for name in sorted(names) if name.endswith(".py"))
            if len(files) > MAX_PROJECT_FILES:
                break
    return files, folders


_LISTINGS: Dict[str, str] = {}  # root -> listing digest, for one run


def listing_digest(root: str) -> str:
    """A hash of which `.py` files the project under `root` holds (their paths), once per run."""
    if root not in _LISTINGS:
        import hashlib

        files = project_python_files(root)[0]
        text = "\n".join(os.path.relpath(f, root) for f in files)
        _LISTINGS[root] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _LISTINGS[root]


def forget_listings() -> None:
    """Files may have come and gone since the last run in this process."""
    _LISTINGS.clear()


class DiscoveryError(Exception):
    """A path given on the command line that cannot be linted (one-line message)."""


def suffixes() -> Tuple[str, ...]:
    """File suffixes picked up when walking folders."""
    if importlib.util.find_spec("gradlint.notebook") is not None:
        return PYTHON_SUFFIXES + (".ipynb",)
    return PYTHON_SUFFIXES


def _spec(lines: Sequence[str]) -> pathspec.GitIgnoreSpec:
    """Patterns compiled as git does: a line git ignores as invalid is dropped, not an error."""
    from gradlint.patterns import compile_lines  # only when patterns are matched

    return compile_lines(lines)


def _read_lines(path: str) -> List[str]:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _git_config_value(path: str, section: str, key: str) -> Optional[str]:
    """The last `key` in `[section]` of a git config file (no includes, no subsections)."""
    value = None
    current = ""
    for raw in _read_lines(path):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = line[1:line.find("]")].strip().lower() if "]" in line else ""
            continue
        name, sep, rest = line.partition("=")
        if sep and current == section and name.strip().lower() == key:
            rest = rest.strip()
            if rest.startswith('"'):  # a quoted value; what follows the closing quote is a comment
                close = rest.find('"', 1)
                value = rest[1:close] if close > 0 else rest[1:]
            else:  # `#` or `;` starts a comment
                value = rest.split("#", 1)[0].split(";", 1)[0].strip()
    return value


def global_excludes_file(repo: str) -> Optional[str]:
    """The file git reads as core.excludesFile for the repository at `repo`: set in the repo's
    .git/config or the user's git config, else $XDG_CONFIG_HOME/git/ignore (~/.config/git/ignore)."""
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    configured = None
    # lowest precedence first: the user's XDG config, ~/.gitconfig, then the repository's
    for config in (os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig"),
                   os.path.join(repo, ".git", "config")):
        value = _git_config_value(config, "core", "excludesfile")
        if value is not None:
            configured = value
    if configured is not None:
        return os.path.expanduser(configured) if configured else None
    return os.path.join(xdg, "git", "ignore")


def _repo_root(start: str) -> Optional[str]:
    here = start
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


class GitIgnore:
    """The .gitignore rules that apply under one repository (or under the settings root when the
    files are not in a git repository). Deeper files override shallower ones, as git does."""

    def __init__(self, top: str, is_repo: bool) -> None:
        self.top = top
        self._specs: Dict[str, Optional[pathspec.GitIgnoreSpec]] = {}
        self._global = None
        if is_repo:
            info = _read_lines(os.path.join(top, ".git", "info", "exclude"))
            self._info = _spec(info) if info else None
            excludes = global_excludes_file(top)
            patterns = _read_lines(excludes) if excludes else []
            self._global = _spec(patterns) if patterns else None
        else:
            self._info = None

    def _spec_for(self, folder: str) -> Optional[pathspec.GitIgnoreSpec]:
        if folder not in self._specs:
            lines = _read_lines(os.path.join(folder, ".gitignore"))
            self._specs[folder] = _spec(lines) if any(ln.strip() and not ln.startswith("#") for ln in lines) else None
        return self._specs[folder]

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Is `path` (absolute, under self.top) ignored by the .gitignore files above it?"""
        verdict = None
        folder = os.path.dirname(path)
        chain = []
        while True:
            chain.append(folder)
            if folder == self.top or os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)
        # git's precedence, lowest first: core.excludesFile, .git/info/exclude, .gitignore files
        checks: list = [(self.top, spec) for spec in (self._global, self._info) if spec is not None]
        checks += [(f, self._spec_for(f)) for f in reversed(chain)]
        for base, spec in checks:
            if spec is None:
                continue
            rel = os.path.relpath(path, base).replace(os.sep, "/") + ("/" if is_dir else "")
            result = spec.check_file(rel)
            if result.include is not None:
                verdict = result.include
        return bool(verdict)


class Excluder:
    """Decides whether a path is excluded by the settings' patterns or by .gitignore."""

    def __init__(self, settings, anchor: Optional[str] = None) -> None:
        self.settings = settings
        # `anchor`: an explicitly named folder that is itself excluded; inside it, patterns and
        # .gitignore files are read relative to it (what it inherits from above does not count).
        self.anchor = os.path.abspath(anchor) if anchor else None
        self.root = self.anchor or os.path.abspath(settings.root)
        self._patterns: Optional[pathspec.GitIgnoreSpec] = None
        self._gitignores: Dict[str, Optional[GitIgnore]] = {}

    @property
    def patterns(self) -> pathspec.GitIgnoreSpec:
        """The exclude patterns, compiled on first use (a run on named files never matches)."""
        if self._patterns is None:
            self._patterns = _spec(self.settings.exclude_patterns)
        return self._patterns

    def _relative(self, full: str) -> str:
        if self.anchor:
            return os.path.relpath(full, self.anchor).replace(os.sep, "/")
        return self.settings.relative(full).lstrip("/")

    def _gitignore(self, path: str) -> Optional[GitIgnore]:
        folder = os.path.dirname(path)
        if folder not in self._gitignores:
            repo = None if self.anchor else _repo_root(folder)
            if repo is not None:
                self._gitignores[folder] = self._gitignores.get("repo:" + repo) or GitIgnore(repo, True)
                self._gitignores["repo:" + repo] = self._gitignores[folder]
            elif path.startswith(self.root + os.sep):
                self._gitignores[folder] = self._gitignores.get("root") or GitIgnore(self.root, False)
                self._gitignores["root"] = self._gitignores[folder]
            else:
                self._gitignores[folder] = None
        return self._gitignores[folder]

    def excluded(self, path: str, is_dir: bool) -> bool:
        full = os.path.abspath(path)
        rel = self._relative(full)
        if self.patterns.match_file(rel + ("/" if is_dir else "")):
            return True
        if self.settings.respect_gitignore:
            ignore = self._gitignore(full)
            if ignore is not None and ignore.ignored(full, is_dir):
                return True
        return False

    def excluded_with_parents(self, path: str, is_dir: bool) -> bool:
        """For explicitly named paths under --force-exclude: the path or a folder above it (up
        to the root) is excluded."""
        full = os.path.abspath(path)
        if self.excluded(full, is_dir):
            return True
        folder = os.path.dirname(full)
        while folder.startswith(self.root + os.sep):
            if self.excluded(folder, True):
                return True
            folder = os.path.dirname(folder)
        return False


def discover(paths: Sequence[str], settings, *, force_exclude: Optional[bool] = None,
             trace: Optional[Dict[str, List[str]]] = None) -> List[str]:
    """The files to lint for the command-line `paths` (sorted, unique). Raises DiscoveryError.
    `trace`, when given, receives the folders walked ("folders") and the symbolic links met in
    them ("links"): what a warm run's manifest (gradlint/warm_record.py) must watch."""
    wanted = suffixes()
    found: Dict[str, str] = {}  # absolute -> as found
    excluders: Dict[int, Excluder] = {}
    for given in paths:
        if not os.path.exists(given):
            if os.path.islink(given):
                raise DiscoveryError(f"{given}: broken symbolic link")
            raise DiscoveryError(f"{given}: no such file or directory")
        # A folder (or file) inside a project with its own config uses that config's excludes.
        local = settings.for_path(os.path.join(given, "_") if os.path.isdir(given) else given) \
            if hasattr(settings, "for_path") else settings
        excluder = excluders.setdefault(id(local), Excluder(local))
        force = local.force_exclude if force_exclude is None else force_exclude
        if os.path.isdir(given):
            if excluder.excluded_with_parents(given, True):
                if force:
                    continue
                walker = Excluder(local, anchor=given)  # named explicitly: lint inside it
            else:
                walker = excluder
            for path in _walk(given, walker, wanted, trace):
                found.setdefault(os.path.abspath(path), path)
        else:
            if force and excluder.excluded_with_parents(given, False):
                continue
            found.setdefault(os.path.abspath(given), given)
    return sorted(found.values())


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return True  # cannot tell: watch it as if it were one


def _walk(top: str, excluder: Excluder, wanted: Tuple[str, ...],
          trace: Optional[Dict[str, List[str]]] = None) -> List[str]:
    """Files under `top` with a wanted suffix, following symlinked folders once each."""
    out: List[str] = []
    seen = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            real = os.path.realpath(folder)
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        if trace is not None:
            trace.setdefault("folders", []).append(folder)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: nothing to lint there
        for entry in entries:
            if trace is not None and _is_link(entry):
                trace.setdefault("links", []).append(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                if not excluder.excluded(entry.path, True):
                    stack.append(entry.path)
            elif is_file and entry.name.endswith(wanted):
                if not excluder.excluded(entry.path, False):
                    out.append(entry.path)
    return out
