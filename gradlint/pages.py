"""The rule catalogue's pages (rules/<CODE>.md), for `gradlint explain` and SARIF rule help.

In a wheel the pages are the package `gradlint.catalogue` (the repo's rules/ folder, mapped by
pyproject.toml); in a checkout they are read from rules/ beside the package.
"""

from __future__ import annotations

import os
from typing import List, Optional


def rule_page(code: str) -> Optional[str]:
    """rules/<CODE>.md: from the installed package `gradlint.catalogue`, else from the repo.

    `gradlint.catalogue` has no __init__.py (it is the repo's rules/ folder), so it is a
    namespace package; importlib.resources.files() cannot read those before Python 3.10, so
    its folders (`__path__`) are searched directly as well."""
    name = f"{code}.md"
    try:
        from importlib import resources

        page = resources.files("gradlint.catalogue").joinpath(name)
        if page.is_file():
            return page.read_text(encoding="utf-8")
    except (ImportError, ModuleNotFoundError, FileNotFoundError, OSError, TypeError, AttributeError):
        pass
    import gradlint

    folders: List[str] = []
    try:
        import importlib

        folders.extend(str(folder) for folder in getattr(importlib.import_module("gradlint.catalogue"),
                                                         "__path__", []))
    except ImportError:
        pass
    folders.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(gradlint.__file__))), "rules"))
    for folder in folders:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            continue
    return None
