"""The runtime tests need PyTorch (the `runtime` extra); without it they are not collected."""

from __future__ import annotations

collect_ignore_glob = []
try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - torch is part of the test environment
    collect_ignore_glob = ["test_*.py"]
