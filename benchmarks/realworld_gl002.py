"""GL002 on public training code: every `retain_graph=True` of a few repositories, labelled by hand.

Not part of the test run. The repositories are not copied here: check them out yourself at the
pinned commits, one folder per repository named `owner+name` under a directory you pass:

    python benchmarks/realworld_gl002.py --repos DIR

Each repository is linted with its folder as the project root (as `gradlint check` run at its top
would), so helpers and trainer classes are followed across its modules. Every labelled call is
reported as a true/false positive/negative; a finding on a line with no label is printed for review
(label it, then). Labels say whether the retain is needless, and why, as read in the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, NamedTuple, Set, Tuple


class Site(NamedTuple):
    repo: str
    commit: str
    path: str
    line: int
    needless: bool
    why: str


GAN_COLLECTIONS = ("znxlwm/pytorch-generative-model-collections", "0d183bb5ea2fbe069e1c6806c4a9a1fd8e81656f")
PYTORCH_GAN = ("eriklindernoren/PyTorch-GAN", "36d3c77e5ff20ebe0aeefd322326a134a279b93e")
BICYCLEGAN = ("junyanz/BicycleGAN", "40b9d52c27b9831f56c1c7c7a6ddde8bc9149067")

SITES: List[Site] = [
    Site(*GAN_COLLECTIONS, "infoGAN.py", 209, True, "G_ and D_fake are recomputed before the G step"),
    Site(*GAN_COLLECTIONS, "infoGAN.py", 221, False, "info_loss walks D_cont/D_disc of the same forward"),
    Site(*PYTORCH_GAN, "implementations/softmax_gan/softmax_gan.py", 153, False, "g_loss reuses d_real/d_fake"),
    Site(*PYTORCH_GAN, "implementations/bicyclegan/bicyclegan.py", 187, False, "loss_latent walks _fake_B"),
    Site(*PYTORCH_GAN, "implementations/cluster_gan/clustergan.py", 450, False, "d_loss reuses D_gen"),
    Site(*PYTORCH_GAN, "implementations/dragan/dragan.py", 162, False, "gradient penalty, create_graph"),
    Site(*PYTORCH_GAN, "implementations/wgan_gp/wgan_gp.py", 133, False, "gradient penalty, create_graph"),
    Site(*PYTORCH_GAN, "implementations/dualgan/dualgan.py", 130, False, "gradient penalty, create_graph"),
    Site(*PYTORCH_GAN, "implementations/stargan/stargan.py", 156, False, "gradient penalty, create_graph"),
    Site(*BICYCLEGAN, "models/bicycle_gan_model.py", 167, False, "backward_G_alone walks fake_B_random via mu2"),
]
# Repositories read for false alarms only (no `retain_graph=True` outside gradient penalties).
CLEAN_REPOS = [
    ("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8"),
    ("Lightning-Universe/lightning-bolts", "34958a8892d42714edf02ba896fd5861ebb3cb7e"),
    ("taesungp/contrastive-unpaired-translation", "b3ac297708dfb6f7589d04662277e53c0d579c27"),
    ("aitorzip/PyTorch-CycleGAN", "67da8f9e2b69bd68763451803c7700aaccc92f18"),
]


def findings(root: str) -> Set[Tuple[str, int]]:
    """(path relative to the repository, line) of every GL002 finding in it."""
    from gradlint.analysis import AnalysisOptions, analyze

    found: Set[Tuple[str, int]] = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                result = analyze(text, path, AnalysisOptions(project_root=root), codes=["GL002"])
            except Exception as error:  # unparsable files are skipped, as GL000 would report them
                print(f"  skipped {os.path.relpath(path, root)}: {type(error).__name__}", file=sys.stderr)
                continue
            found |= {(os.path.relpath(path, root).replace(os.sep, "/"), f.line) for f in result}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", required=True, help="folder holding owner+name checkouts at the pinned commits")
    args = parser.parse_args()
    repos: Dict[str, str] = {}
    for site in SITES:
        repos[site.repo] = site.commit
    for repo, commit in CLEAN_REPOS:
        repos[repo] = commit
    tp = fp = fn = tn = 0
    unlabelled: List[str] = []
    for repo, commit in sorted(repos.items()):
        root = os.path.join(args.repos, repo.replace("/", "+"))
        if not os.path.isdir(root):
            print(f"{repo}: missing (check out {commit} into {root})")
            continue
        found = findings(root)
        labelled = {(s.path, s.line): s for s in SITES if s.repo == repo}
        for key, site in sorted(labelled.items()):
            hit = key in found
            verdict = {(True, True): "TP", (False, True): "FP", (True, False): "FN", (False, False): "TN"}[
                (site.needless, hit)
            ]
            tp += verdict == "TP"
            fp += verdict == "FP"
            fn += verdict == "FN"
            tn += verdict == "TN"
            print(f"{verdict} {repo}@{commit[:7]} {site.path}:{site.line}  ({site.why})")
        unlabelled += [f"{repo}@{commit[:7]} {p}:{n}" for p, n in sorted(found - set(labelled))]
    for item in unlabelled:
        print(f"?? {item}: a finding with no label, review it")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    print(f"GL002: TP {tp} FP {fp} FN {fn} TN {tn} unlabelled {len(unlabelled)}; "
          f"precision {precision:.2f} recall {recall:.2f}")
    return 1 if fp or unlabelled else 0


if __name__ == "__main__":
    sys.exit(main())
