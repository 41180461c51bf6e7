"""[tool.gradlint] settings: discovery of the file, every key, rule selection, and bad input."""

from __future__ import annotations

import pickle

import pytest

from gradlint.config import DEFAULT_EXCLUDES, ConfigError, Selection, load_settings, parse_selectors
from gradlint.findings import RULES

DEFAULT = {code for code, info in RULES.items() if info.default_on}


def settings_with(project, body: str, **kwargs):
    project.write("pyproject.toml", "[tool.gradlint]\n" + body)
    return load_settings(str(project.root), **kwargs)


def test_defaults_without_config(project):
    settings = load_settings(str(project.root))
    assert settings.config_path is None
    assert settings.root == str(project.root)
    assert set(settings.base_codes) == DEFAULT
    assert "GL100" not in settings.base_codes
    assert settings.exclude == DEFAULT_EXCLUDES
    assert settings.respect_gitignore is True and settings.force_exclude is False


def test_nearest_pyproject_with_table_walking_up(project):
    project.write("pyproject.toml", '[tool.gradlint]\nignore = ["GL002"]\n')
    project.write("pkg/pyproject.toml", '[project]\nname = "inner"\n')  # no [tool.gradlint]: skipped
    sub = project.root / "pkg" / "deep"
    sub.mkdir(parents=True)
    settings = load_settings(str(sub))
    assert settings.config_path == str(project.root / "pyproject.toml")
    assert settings.root == str(project.root)
    assert "GL002" not in settings.base_codes


def test_every_key_is_read(project):
    settings = settings_with(project, """
select = ["GL"]
ignore = ["GL003"]
extend-select = []
exclude = ["legacy"]
extend-exclude = ["generated/**"]
per-file-ignores = {"tests/**" = ["GL001"]}
respect-gitignore = false
force-exclude = true
output-format = "concise"
cache-dir = "cache"
backward-functions = ["utils.run_backward"]
step-functions = ["apply_update"]
clear-functions = ["reset_grads"]
""")
    assert set(settings.base_codes) == set(RULES) - {"GL003"}
    assert settings.exclude_patterns == ("legacy", "generated/**")
    assert settings.respect_gitignore is False and settings.force_exclude is True
    assert settings.output_format == "concise"
    assert settings.cache_path == str(project.root / "cache")
    options = settings.analysis_options
    assert options.backward_functions == ("utils.run_backward",)
    assert options.step_functions == ("apply_update",)
    assert options.clear_functions == ("reset_grads",)
    assert options.project_root == str(project.root)
    assert settings.helper_names == ("apply_update", "reset_grads", "run_backward")
    assert "GL001" not in settings.enabled_codes(str(project.root / "tests" / "test_x.py"))
    assert "GL001" in settings.enabled_codes(str(project.root / "train.py"))


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("colour = true", "unknown key 'colour'"),
        ("per_file_ignores = {}", "did you mean 'per-file-ignores'"),
        ('select = "GL001"', "select: expected a list of strings"),
        ('select = ["GL999"]', "unknown rule code or prefix 'GL999'"),
        ('select = ["E501"]', "unknown rule code or prefix 'E501'"),
        ('respect-gitignore = "yes"', "respect-gitignore: expected true or false"),
        ('output-format = "xml"', "unknown output format 'xml'"),
        ('per-file-ignores = ["tests/**"]', "per-file-ignores: expected a table"),
        ('per-file-ignores = {"tests/**" = ["XX1"]}', "unknown rule code"),
        ('cache-dir = ""', "cache-dir: expected a non-empty string"),
        ('backward-functions = ["not a name"]', "is not a (dotted) Python name"),
        ("select = [1]", "expected a list of strings"),
        ("[tool.gradlint.nested]\nx = 1", "unknown key 'nested'"),
    ],
)
def test_bad_keys_and_values_raise_one_line(project, body, fragment):
    with pytest.raises(ConfigError) as err:
        settings_with(project, body)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert "pyproject.toml" in str(err.value)


def test_invalid_toml_is_a_config_error(project, monkeypatch):
    project.write("pyproject.toml", "[tool.gradlint\nselect = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(str(project.root))
    monkeypatch.chdir(project.root)  # named as the other configuration errors name it: relative
    with pytest.raises(ConfigError) as err:
        load_settings(str(project.root))
    assert str(err.value).startswith("pyproject.toml: invalid TOML: ")


def test_config_file_option(project):
    project.write("gradlint.toml", 'ignore = ["GL003"]\n')
    settings = load_settings(str(project.root), config_file="gradlint.toml")
    assert "GL003" not in settings.base_codes
    project.write("other/pyproject.toml", '[tool.gradlint]\nignore = ["GL001"]\n')
    settings = load_settings(str(project.root), config_file="other/pyproject.toml")
    assert "GL001" not in settings.base_codes
    assert settings.root == str(project.root / "other")


def test_config_file_errors(project):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(str(project.root), config_file="missing.toml")
    project.write("p/pyproject.toml", "[project]\nname='x'\n")
    with pytest.raises(ConfigError, match="no \\[tool.gradlint\\] table"):
        load_settings(str(project.root), config_file="p/pyproject.toml")
    project.write("x.toml", "")
    with pytest.raises(ConfigError, match="cannot be used together"):
        load_settings(str(project.root), config_file="x.toml", isolated=True)


def test_isolated_ignores_config(project):
    settings = settings_with(project, 'select = ["GL001"]\n', isolated=True)
    assert settings.config_path is None
    assert set(settings.base_codes) == DEFAULT


def test_command_line_overrides_win(project):
    settings = settings_with(project, 'select = ["GL001"]\n',
                             overrides={"select": ["GL003"], "extend-select": ["GL100"]})
    assert set(settings.base_codes) == {"GL000", "GL003", "GL100"}
    settings = settings_with(project, 'ignore = ["GL001"]\n', overrides={"ignore": ["GL002"]})
    assert set(settings.base_codes) == DEFAULT - {"GL001", "GL002"}
    with pytest.raises(ConfigError, match="^--select: unknown rule"):
        settings_with(project, "", overrides={"select": ["NOPE1"]})


@pytest.mark.parametrize(
    "layer, expected",
    [
        (Selection(select=("ALL",)), set(RULES)),
        (Selection(select=("GL00",)), {code for code in RULES if code.startswith("GL00")}),
        (Selection(select=("GL",), ignore=("GL002",)), set(RULES) - {"GL002"}),
        # the more specific selector wins inside one layer
        (Selection(select=("GL001",), ignore=("GL00",)), {"GL000", "GL001"}),
        (Selection(extend_select=("GL100",)), DEFAULT | {"GL100"}),
        (Selection(select=("GL002",)), {"GL000", "GL002"}),
        (Selection(ignore=("GL000",)), DEFAULT - {"GL000"}),
        (Selection(ignore=("ALL",)), {"GL000"}),
    ],
)
def test_selection_semantics(layer, expected):
    assert layer.apply(DEFAULT) == expected


def test_selectors_accept_commas_and_lower_case():
    assert parse_selectors(["gl001, GL002", "GL003"], "--select") == ("GL001", "GL002", "GL003")


def test_per_file_ignores_match_basenames_and_globs(project):
    settings = settings_with(project, 'per-file-ignores = {"__init__.py" = ["GL"], "scripts/*.py" = ["GL002"]}\n')
    assert settings.enabled_codes(str(project.root / "pkg" / "__init__.py")) == {"GL000"}
    assert "GL002" not in settings.enabled_codes(str(project.root / "scripts" / "a.py"))
    assert "GL002" in settings.enabled_codes(str(project.root / "train.py"))


def test_settings_survive_pickling_for_workers(project):
    settings = settings_with(project, 'per-file-ignores = {"t/**" = ["GL001"]}\n')
    settings.enabled_codes("t/a.py")  # fills the memo with compiled patterns
    clone = pickle.loads(pickle.dumps(settings))
    assert clone.enabled_codes("t/a.py") == settings.enabled_codes("t/a.py")


def test_hierarchical_nearest_config_per_file(project):
    project.write("pyproject.toml", '[tool.gradlint]\nignore = ["GL003"]\n')
    project.write("sub/pyproject.toml", '[tool.gradlint]\nignore = ["GL001"]\nextend-exclude = ["gen/"]\n')
    settings = load_settings(str(project.root), overrides={"extend-select": ["GL100"]})
    top = settings.for_path(str(project.root / "train.py"))
    sub = settings.for_path(str(project.root / "sub" / "deep" / "train.py"))
    assert top is settings
    assert sub.root == str(project.root / "sub")
    assert "GL001" not in sub.base_codes and "GL003" in sub.base_codes  # its own config, not merged
    assert "GL100" in sub.base_codes  # command-line overrides still apply
    assert load_settings(str(project.root), isolated=True).for_path(str(project.root / "sub" / "x.py")).root == \
        str(project.root)
    assert load_settings(str(project.root), config_file="pyproject.toml").for_path(
        str(project.root / "sub" / "x.py")).config_path == str(project.root / "pyproject.toml")
