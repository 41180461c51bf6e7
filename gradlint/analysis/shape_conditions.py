"""What GL003's reported shape kinds mean, said in its findings and read back by its runtime judge.

Kept apart from `gradlint.analysis.shapes` (which needs LibCST) so that `gradlint run` can tell a
finding's condition without importing a parser: the report of a rerun comes from the cache.
"""

from __future__ import annotations

# Kinds whose backward without a gradient fails (always, or under the stated condition).
REPORTED = frozenset({"nonscalar", "batched", "gathered"})

# What each reported kind means for the user, said in the finding.
CONDITIONS = {
    "nonscalar": "is not a scalar",
    "batched": "has one value per sample: fails for any batch larger than 1",
    "gathered": "holds one loss per GPU (DataParallel gathers them): fails on more than one GPU",
}
