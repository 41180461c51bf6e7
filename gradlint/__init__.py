"""gradlint: find gradient-hygiene bugs in PyTorch training code before the run."""

__version__ = "0.1.0"
