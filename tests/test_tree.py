"""The indexed walk (gradlint.analysis.tree) yields exactly what a fresh traversal yields."""

from __future__ import annotations

import libcst as cst

from gradlint.analysis import tree
from gradlint.analysis.tree import SCOPES, forget_trees, walk

SOURCE = '''
import torch

class Trainer:
    def fit(self, loader):
        for batch in loader:
            loss = self.model(batch).sum()
            loss.backward()
            hook = lambda g: g * 2
            def inner(x, y=[i for i in range(3)]):
                return x + y[0]
        else:
            pass

def main(a, *, b=1):
    with torch.no_grad():
        return [a[k] async for k in b] if a else {"k": (lambda: b)()}
'''


def _fresh(node, stop=()):
    return list(tree._walk_fresh(node, stop))


def test_indexed_walk_matches_a_fresh_walk_for_every_node_and_stop_set():
    forget_trees()
    module = cst.parse_module(SOURCE)
    nodes = list(walk(module))  # indexes the module
    assert nodes == _fresh(module)
    assert len(tree._TREES) == 1
    for node in nodes:
        for stop in ((), SCOPES, (cst.FunctionDef,), (cst.Call, cst.Lambda)):
            assert list(walk(node, stop)) == _fresh(node, stop)
    forget_trees()
    assert tree._TREES == []


def test_nodes_outside_any_index_are_walked_fresh_and_the_index_is_bounded():
    forget_trees()
    statement = cst.parse_statement("x = f(y, z=[1, 2])")
    assert list(walk(statement)) == _fresh(statement)
    assert tree._TREES == []  # only whole modules are indexed
    modules = [cst.parse_module(f"v{i} = {i}\n") for i in range(tree._MAX_TREES + 3)]
    for module in modules:
        assert list(walk(module)) == _fresh(module)
    assert len(tree._TREES) == tree._MAX_TREES
    first = modules[0]  # dropped from the index: still walked correctly
    assert list(walk(first.body[0])) == _fresh(first.body[0])
    forget_trees()


def test_typed_gives_the_nodes_of_exactly_those_types_in_walk_order():
    forget_trees()
    module = cst.parse_module(SOURCE)
    for root in (module, module.body[1], cst.parse_statement("for a in b:\n    f(a)\n")):
        for kinds in ((cst.FunctionDef,), (cst.Call, cst.Lambda), (cst.Name,)):
            expected = [n for n in _fresh(root) if type(n) in kinds]
            assert tree.typed(root, *kinds) == expected
            assert tree.typed(root, *kinds) == expected  # a kept answer is the same answer
    forget_trees()
