"""Time the alpha/beta search of ``TipAdapterClassifierCV`` against the usual
alternatives, on the reference's 200 x 20 grid.

Embeddings are synthetic: 16 shots x 100 classes in 1024 dimensions, and a
5000-item validation set. Three comparisons, each on the same embeddings:

* ``TipAdapterClassifierCV(cv=5)`` against ``GridSearchCV`` over
  ``TipAdapterClassifier`` with the same 5 folds;
* ``TipAdapterClassifierCV`` with ``X_val`` against a plain loop of the
  reference's ``search_hp`` on the validation set (in torch, as the
  reference computes);
* leave-one-out (``cv=None``), the default, for information.

The two baselines take many minutes on a small CPU. Unless ``--full`` is
given they run on the first ``--baseline-betas`` betas of the grid only and
their time is scaled up linearly to the whole grid: every candidate costs
the same in both of them. The printout says which figures are scaled.

Usage::

    python benchmarks/bench_search.py [--full] [--baseline-betas 2]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sktip import TipAdapterClassifier, TipAdapterClassifierCV, reference_grid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--baseline-betas", type=int, default=2)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()

    X, y, X_val, y_val, text = synthetic(args.classes, args.shots, args.dim, args.val)
    betas, alphas = reference_grid(7, 200), reference_grid(3, 20)
    baseline_betas = betas if args.full else betas[: args.baseline_betas]
    scale = len(betas) / len(baseline_betas)
    scaled = "" if args.full else f" (scaled from {len(baseline_betas)} betas)"
    print(
        f"{len(X)} shots, {args.dim} dims, {len(X_val)} validation items, "
        f"grid {len(betas)} betas x {len(alphas)} alphas, "
        f"{torch.get_num_threads()} threads"
    )

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    ours_cv = timed(
        lambda: TipAdapterClassifierCV(
            alphas=alphas, betas=betas, cv=folds, text_features=text
        ).fit(X, y)
    )
    grid_search = scale * timed(
        lambda: GridSearchCV(
            TipAdapterClassifier(text_features=text),
            {"beta": list(baseline_betas), "alpha": list(alphas)},
            cv=folds,
        ).fit(X, y)
    )
    print(f"TipAdapterClassifierCV(cv=5)      {ours_cv:9.2f} s")
    print(f"GridSearchCV(cv=5)                {grid_search:9.2f} s{scaled}")
    print(f"  speed-up: {grid_search / ours_cv:.0f}x")

    ours_val = timed(
        lambda: TipAdapterClassifierCV(
            alphas=alphas, betas=betas, text_features=text
        ).fit(X, y, X_val=X_val, y_val=y_val)
    )
    reference = scale * timed(
        lambda: reference_search(X_val, y_val, X, y, text, baseline_betas, alphas)
    )
    print(f"TipAdapterClassifierCV(X_val)     {ours_val:9.2f} s")
    print(f"reference search_hp loop          {reference:9.2f} s{scaled}")
    print(f"  speed-up: {reference / ours_val:.1f}x")

    ours_loo = timed(
        lambda: TipAdapterClassifierCV(
            alphas=alphas, betas=betas, text_features=text
        ).fit(X, y)
    )
    print(f"TipAdapterClassifierCV(cv=None)   {ours_loo:9.2f} s  (leave-one-out)")


def synthetic(n_classes, shots, dim, n_val, seed=0):
    """Clustered unit vectors, float32 like CLIP features."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, dim), dtype=np.float32)

    def sample(labels):
        points = centers[labels] + 1.5 * rng.standard_normal(
            (len(labels), dim), dtype=np.float32
        )
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    y = np.repeat(np.arange(n_classes), shots)
    y_val = rng.integers(n_classes, size=n_val)
    text = sample(np.arange(n_classes))
    return sample(y), y, sample(y_val), y_val, text


def reference_search(val_features, val_labels, keys, labels, text, betas, alphas):
    """The reference's ``search_hp``: every candidate recomputes everything."""
    val_features = torch.from_numpy(val_features)
    keys, text = torch.from_numpy(keys).T, torch.from_numpy(text).T
    values = torch.nn.functional.one_hot(torch.from_numpy(labels)).float()
    val_labels = torch.from_numpy(val_labels)
    best = (0.0, 0.0, 0.0)
    for beta in betas:
        for alpha in alphas:
            affinity = val_features @ keys
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ values
            clip_logits = 100.0 * val_features @ text
            tip_logits = clip_logits + cache_logits * alpha
            pred = tip_logits.topk(1, 1, True, True)[1].t()[0]
            acc = float((pred == val_labels).sum()) / len(val_labels)
            if acc > best[0]:
                best = (acc, beta, alpha)
    return best


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
