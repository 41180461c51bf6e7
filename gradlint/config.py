"""Settings: `[tool.gradlint]` in pyproject.toml, `--config FILE`, `--isolated`, and CLI overrides.

One `Settings` object answers the questions the rest of gradlint asks: which rule codes are enabled
for a file (`enabled_codes(path)`), which paths are excluded, where the cache lives, and what the
analysis must know about project helpers (`analysis_options`). Every problem with the configuration
raises `ConfigError` with a one-line reason; the CLI turns that into exit status 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from gradlint.findings import RULES
from gradlint.rules import parse_error

try:  # Python >= 3.11
    import tomllib as _toml
except ImportError:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as _toml  # type: ignore[no-redef]

PYPROJECT = "pyproject.toml"
TABLE = ("tool", "gradlint")

# Folders nobody wants linted; `exclude` replaces this list, `extend-exclude` adds to it.
DEFAULT_EXCLUDES: Tuple[str, ...] = (
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".tox", ".nox", "build", "dist", "__pycache__",
    "node_modules", "site-packages", ".eggs", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".gradlint_cache", ".ipynb_checkpoints",
)
DEFAULT_CACHE_DIR = ".gradlint_cache"

# GL000 (the file cannot be read) is reported whatever --select says, like ruff's syntax errors;
# only naming it exactly in an ignore list turns it off.

_SELECTOR = re.compile(r"^(ALL|[A-Z]+[0-9]*)$")


class ConfigError(Exception):
    """A configuration or usage problem, with a one-line message meant for the user."""


# ---------------------------------------------------------------------------------------------
# Rule selection


def parse_selectors(values: Iterable[str], where: str) -> Tuple[str, ...]:
    """Validate rule selectors (codes, prefixes such as `GL` or `GL00`, `ALL`, or a rule's name such
    as `missing-zero-grad`); returns them as codes/prefixes."""
    out = []
    for raw in values:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected rule codes as strings, got {raw!r}")
        if not raw.strip(" \t\r\n,"):  # `select = [""]` is a mistake, not "no rules"
            raise ConfigError(f"{where}: empty rule selector {raw!r} (use `[]` to select no rules)")
        for part in re.split(r"[,\s]+", raw.strip()):
            if not part:
                continue
            selector = part.upper()
            named = next((code for code, info in RULES.items() if info.name == part.lower()), None)
            if named is not None:  # a rule's name (missing-zero-grad) stands for its code
                selector = named
            if not _SELECTOR.match(selector) or (
                selector != "ALL" and not any(code.startswith(selector) for code in RULES)
            ):
                raise ConfigError(f"{where}: unknown rule code or prefix {part!r} (see `gradlint rules`)")
            out.append(selector)
    return tuple(out)


def _matches(selector: str, code: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def _specificity(selector: str) -> int:
    return 0 if selector == "ALL" else len(selector)


@dataclass(frozen=True)
class Selection:
    """One layer of rule selection (the config file's, then the command line's), ruff-style:
    `select` replaces what earlier layers chose, `extend-select` adds, `ignore` removes; within a
    layer the more specific selector wins (`select = ["GL"]`, `ignore = ["GL002"]` drops GL002)."""

    select: Optional[Tuple[str, ...]] = None
    extend_select: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()

    def apply(self, enabled: set) -> set:
        if self.select is not None:  # a new selection; GL000 stays unless ignored by name
            enabled = {parse_error().code} & set(enabled)
        chosen = [(s, True) for s in (self.select or ()) + self.extend_select]
        chosen += [(s, False) for s in self.ignore]
        # Less specific first, so more specific selectors overrule them; ignore last on a tie.
        chosen.sort(key=lambda item: (_specificity(item[0]), item[1] is False))
        enabled = set(enabled)
        for selector, on in chosen:
            for code in RULES:
                if _matches(selector, code):
                    if on:
                        enabled.add(code)
                    elif selector == code or code != parse_error().code:
                        enabled.discard(code)
        return enabled


def default_codes() -> set:
    return {code for code, info in RULES.items() if info.default_on}


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    """Resolved configuration for one run. Picklable (sent to worker processes)."""

    root: str  # folder of the config file, else the cwd; relative patterns are anchored here
    config_path: Optional[str] = None
    selections: Tuple[Selection, ...] = ()
    per_file_ignores: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    exclude: Tuple[str, ...] = DEFAULT_EXCLUDES
    extend_exclude: Tuple[str, ...] = ()
    respect_gitignore: bool = True
    force_exclude: bool = False
    output_format: Optional[str] = None
    cache_dir: str = DEFAULT_CACHE_DIR
    backward_functions: Tuple[str, ...] = ()
    step_functions: Tuple[str, ...] = ()
    clear_functions: Tuple[str, ...] = ()
    # Hierarchical configuration (ruff-style): with no --config/--isolated, a file under a folder
    # that has its own pyproject.toml with [tool.gradlint] uses that file's settings (plus the
    # same command-line overrides); `for_path` answers which settings apply to a file.
    hierarchical: bool = False
    overrides: Dict[str, Any] = field(default_factory=dict, repr=False)
    _memo: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def for_path(self, path: str) -> "Settings":
        """The settings for one file: those of the nearest config above it, else these."""
        if not self.hierarchical:
            return self
        found = _nearest_config(os.path.dirname(os.path.abspath(path)))
        if found is None or found == self.config_path:
            return self
        return _settings_of_config(found, self.overrides)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_memo"] = {}  # compiled path specs stay behind; workers rebuild them
        return state

    # -- rules -----------------------------------------------------------------------------

    @property
    def base_codes(self) -> frozenset:
        """Codes enabled before per-file ignores."""
        if "base" not in self._memo:
            enabled = default_codes()
            for layer in self.selections:
                enabled = layer.apply(enabled)
            self._memo["base"] = frozenset(enabled)
        return self._memo["base"]

    def enabled_codes(self, path: str) -> set:
        """The rule codes that apply to `path` (select/ignore, then per-file-ignores)."""
        enabled = set(self.base_codes)
        if not self.per_file_ignores:
            return enabled
        specs = self._memo.get("pfi")
        if specs is None:
            from gradlint.patterns import compile_lines  # patterns were validated when read

            specs = [(compile_lines([pattern]), codes) for pattern, codes in self.per_file_ignores]
            self._memo["pfi"] = specs
        rel = self.relative(path)
        for spec, codes in specs:
            if spec.match_file(rel):
                enabled = Selection(ignore=codes).apply(enabled)
        return enabled

    # -- paths -----------------------------------------------------------------------------

    def relative(self, path: str) -> str:
        """POSIX path of `path` relative to the settings root (absolute when outside it)."""
        full = os.path.abspath(path)
        try:
            rel = os.path.relpath(full, self.root)
        except ValueError:  # another drive on Windows
            return full.replace(os.sep, "/")
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return full.replace(os.sep, "/")
        return rel.replace(os.sep, "/")

    @property
    def exclude_patterns(self) -> Tuple[str, ...]:
        return tuple(self.exclude) + tuple(self.extend_exclude)

    @property
    def cache_path(self) -> str:
        return self.cache_dir if os.path.isabs(self.cache_dir) else os.path.join(self.root, self.cache_dir)

    # -- analysis --------------------------------------------------------------------------

    @property
    def analysis_options(self):
        from gradlint.analysis import AnalysisOptions

        return AnalysisOptions(
            backward_functions=tuple(self.backward_functions),
            step_functions=tuple(self.step_functions),
            clear_functions=tuple(self.clear_functions),
            project_root=self.root,
        )

    @property
    def helper_names(self) -> Tuple[str, ...]:
        """The last component of every configured helper name (for the text prefilter)."""
        names = self.backward_functions + self.step_functions + self.clear_functions
        return tuple(sorted({name.rsplit(".", 1)[-1] for name in names if name}))


# ---------------------------------------------------------------------------------------------
# Reading the configuration


def _shown(path: str) -> str:
    """A configuration file as messages name it: relative to the current directory when under it
    (as the other configuration errors say it: `pyproject.toml: select: ...`)."""
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


def _read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return _toml.load(handle)
    except OSError as err:
        raise ConfigError(f"{_shown(path)}: cannot read: {err.strerror or err}") from None
    except _toml.TOMLDecodeError as err:
        raise ConfigError(f"{_shown(path)}: invalid TOML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{_shown(path)}: invalid TOML: not UTF-8") from None
    except RecursionError:  # tomllib recurses once per nested array/table
        raise ConfigError(f"{_shown(path)}: invalid TOML: nested too deeply to read") from None


def _tool_table(doc: dict) -> Optional[dict]:
    table: Any = doc
    for key in TABLE:
        if not isinstance(table, dict) or key not in table:
            return None
        table = table[key]
    return table


def find_config(start: str) -> Optional[str]:
    """The nearest pyproject.toml with a [tool.gradlint] table, walking up from `start`."""
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, PYPROJECT)
        if os.path.isfile(candidate) and _tool_table(_read_toml(candidate)) is not None:
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


_NEAREST: Dict[str, Optional[str]] = {}  # folder -> nearest config; cleared by load_settings
_LOADED: Dict[tuple, "Settings"] = {}  # (config path, mtime, overrides) -> settings


def _nearest_config(folder: str) -> Optional[str]:
    if folder not in _NEAREST:
        candidate = os.path.join(folder, PYPROJECT)
        if os.path.isfile(candidate) and _tool_table(_read_toml(candidate)) is not None:
            _NEAREST[folder] = candidate
        else:
            parent = os.path.dirname(folder)
            _NEAREST[folder] = None if parent == folder else _nearest_config(parent)
    return _NEAREST[folder]


def _settings_of_config(path: str, overrides: Dict[str, Any]) -> "Settings":
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    key = (path, stamp, repr(sorted(overrides.items())))
    if key not in _LOADED:
        table = _tool_table(_read_toml(path)) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.gradlint] must be a table")
        values = _validate(table, _shown(path))
        cli = _validate({k: v for k, v in overrides.items() if v is not None}, None)
        settings = _settings_from(values, os.path.dirname(path), path, cli)
        settings.hierarchical = True
        settings.overrides = dict(overrides)
        _LOADED[key] = settings
    return _LOADED[key]


def _string_list(value: Any, key: str) -> Tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
        isinstance(item, str) for item in value
    ):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _output_format(value: Any, key: str) -> str:
    from gradlint.reporters import FORMATS

    if not isinstance(value, str) or value not in FORMATS:
        raise ConfigError(f"{key}: unknown output format {value!r} (one of: {', '.join(FORMATS)})")
    return value


def _per_file_ignores(value: Any, key: str) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table of glob = [codes], got {value!r}")
    out = []
    for pattern, codes in value.items():
        _check_pattern(pattern, key)
        out.append((pattern, parse_selectors(_string_list(codes, f"{key}.{pattern!r}"), f"{key}.{pattern!r}")))
    return tuple(out)


def _check_pattern(pattern: str, key: str) -> None:
    from gradlint.patterns import invalid_pattern

    reason = invalid_pattern(pattern)
    if reason is not None:
        raise ConfigError(f"{key}: invalid pattern {pattern!r}: {reason}")


def _patterns(value: Any, key: str) -> Tuple[str, ...]:
    patterns = _string_list(value, key)
    for pattern in patterns:
        _check_pattern(pattern, key)
    return patterns


def _helper_names(value: Any, key: str) -> Tuple[str, ...]:
    names = _string_list(value, key)
    for name in names:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", name):
            raise ConfigError(f"{key}: {name!r} is not a (dotted) Python name")
    return names


# key in [tool.gradlint] -> (Settings field, validator)
_KEYS = {
    "select": ("select", lambda v, k: parse_selectors(_string_list(v, k), k)),
    "extend-select": ("extend_select", lambda v, k: parse_selectors(_string_list(v, k), k)),
    "ignore": ("ignore", lambda v, k: parse_selectors(_string_list(v, k), k)),
    "per-file-ignores": ("per_file_ignores", _per_file_ignores),
    "exclude": ("exclude", _patterns),
    "extend-exclude": ("extend_exclude", _patterns),
    "respect-gitignore": ("respect_gitignore", _bool),
    "force-exclude": ("force_exclude", _bool),
    "output-format": ("output_format", _output_format),
    "cache-dir": ("cache_dir", lambda v, k: _nonempty_string(v, k)),
    "backward-functions": ("backward_functions", _helper_names),
    "step-functions": ("step_functions", _helper_names),
    "clear-functions": ("clear_functions", _helper_names),
}


def _nonempty_string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _validate(table: Mapping[str, Any], origin: Optional[str]) -> dict:
    """Check every key of a [tool.gradlint] table (origin: the file) or of command-line overrides
    (origin None, reported as `--key`); return Settings field values."""
    values: dict = {}
    for key, value in table.items():
        spec = _KEYS.get(key)
        if spec is None:
            hint = ""
            if key.replace("_", "-") in _KEYS:
                hint = f" (did you mean {key.replace('_', '-')!r}?)"
            raise ConfigError(f"{origin or 'command line'}: unknown key {key!r}{hint}")
        attr, check = spec
        values[attr] = check(value, f"{origin}: {key}" if origin else f"--{key}")
    return values


def _settings_from(values: dict, root: str, config_path: Optional[str], cli: dict) -> Settings:
    layers = []
    for source in (values, cli):
        if any(k in source for k in ("select", "extend_select", "ignore")):
            layers.append(Selection(source.get("select"), source.get("extend_select", ()), source.get("ignore", ())))
    known = {f.name for f in fields(Settings)}
    merged = {k: v for k, v in values.items() if k in known}
    merged.update({k: v for k, v in cli.items() if k in known})
    if "extend_exclude" in cli:  # --extend-exclude adds to the file's extend-exclude
        merged["extend_exclude"] = tuple(values.get("extend_exclude", ())) + tuple(cli["extend_exclude"])
    return Settings(root=root, config_path=config_path, selections=tuple(layers), **merged)


def load_settings(
    cwd: str,
    *,
    config_file: Optional[str] = None,
    isolated: bool = False,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Settings:
    """Resolve the settings for a run started in `cwd`.

    `config_file` names a TOML file explicitly (a pyproject.toml is read at [tool.gradlint], any
    other file at its top level or its [tool.gradlint] table); `isolated` ignores every config file;
    `overrides` are command-line values keyed like the config (`select`, `ignore`, `extend-select`,
    `force-exclude`, `output-format`, `cache-dir`, ...) and win over the file.
    """
    cwd = os.path.abspath(cwd)
    values: dict = {}
    root, path = cwd, None
    if config_file is not None and isolated:
        raise ConfigError("--config and --isolated cannot be used together")
    if config_file is not None:
        path = os.path.abspath(os.path.join(cwd, config_file))
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {config_file}")
        doc = _read_toml(path)
        table = _tool_table(doc)
        if table is None:
            if os.path.basename(path) == PYPROJECT:
                raise ConfigError(f"{config_file} has no [tool.gradlint] table")
            table = doc
    elif not isolated:
        path = find_config(cwd)
        table = _tool_table(_read_toml(path)) if path else {}
    else:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradlint] must be a table")
    if path:
        root = os.path.dirname(path)
        values = _validate(table, os.path.relpath(path, cwd) if path.startswith(cwd) else path)
    cli = _validate({k: v for k, v in (overrides or {}).items() if v is not None}, None)
    settings = _settings_from(values, root, path, cli)
    if config_file is None and not isolated:
        _NEAREST.clear()  # configs may have changed since the last call in this process
        settings.hierarchical = True
        settings.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    return settings
