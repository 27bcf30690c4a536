"""Scoring a whole grid of (alpha, beta) in one pass.

The Tip logits of a candidate pair are ``clip + alpha * cache(beta)``: the
affinity between queries and keys does not depend on the pair, the cache
term depends on ``beta`` alone and ``alpha`` only scales it. So the affinity
is computed once, one exponential is taken per beta, and every alpha is a
scaled addition. The reference instead recomputes everything for every one
of its 4000 candidates.
"""

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import balanced_accuracy_score

from sktip._cache import CLIP_LOGIT_SCALE

__all__ = ["REFERENCE_SEARCH_SCALES", "reference_grid"]

#: The reference's search ranges per dataset, as ``(beta_scale, alpha_scale)``
#: (``search_scale`` in its configs). Its grids take 200 betas and 20 alphas:
#: ``reference_grid(beta_scale, 200)`` and ``reference_grid(alpha_scale, 20)``.
REFERENCE_SEARCH_SCALES = {
    "imagenet": (7, 3),
    "caltech101": (12, 5),
    "dtd": (13, 13),
    "eurosat": (12, 10),
    "fgvc_aircraft": (30, 30),
    "food101": (10, 10),
    "oxford_flowers": (50, 50),
    "oxford_pets": (7, 3),
    "stanford_cars": (20, 10),
    "sun397": (12, 10),
    "ucf101": (7, 3),
}

#: The reference's number of grid points, as ``(beta_steps, alpha_steps)``.
REFERENCE_SEARCH_STEPS = (200, 20)


def reference_grid(scale, steps):
    """The reference's search grid, bit for bit.

    ``steps`` points from 0.1 upwards, spaced ``(scale - 0.1) / steps``; the
    end point ``scale`` itself is excluded. Each point is computed as
    ``k * (scale - 0.1) / steps + 0.1`` in float64 and in that order, which
    differs from ``np.linspace(0.1, scale, steps, endpoint=False)`` in the
    last bit at about a quarter of the points.

    Parameters
    ----------
    scale : float
        Upper end of the range (excluded). The reference's per-dataset values
        are in :data:`REFERENCE_SEARCH_SCALES`: ``(beta_scale, alpha_scale)``.
    steps : int
        Number of points; the reference uses 200 for beta and 20 for alpha.

    Returns
    -------
    grid : ndarray of shape (steps,), dtype float64
        The candidate values, increasing from 0.1.

    See Also
    --------
    TipAdapterClassifierCV : Searches such grids with ``alphas`` and ``betas``.

    Examples
    --------
    >>> from sktip import reference_grid
    >>> reference_grid(3, 20)[:3]
    array([0.1  , 0.245, 0.39 ])
    """
    return np.array([k * (scale - 0.1) / steps + 0.1 for k in range(steps)])


def grid_scores(
    affinity, clip, values, y_indices, alphas, betas, scoring, exclude_self=False
):
    """Score every (beta, alpha) pair on one set of queries.

    Parameters
    ----------
    affinity : ndarray of shape (n_queries, n_keys)
        Cosine similarity of the queries to the cache keys.
    clip : ndarray of shape (n_queries, n_classes) or None
        Zero-shot logits of the queries; ``None`` for a cache-only model.
    values : ndarray of shape (n_keys, n_classes)
        One-hot cache values.
    y_indices : ndarray of shape (n_queries,)
        True class index of every query.
    alphas, betas : ndarray
    scoring : {"accuracy", "balanced_accuracy", "neg_log_loss"}
    exclude_self : bool, default=False
        Queries are the keys themselves (square ``affinity``): leave each
        query's own key out of its cache vote, which is leave-one-out.

    Returns
    -------
    scores : ndarray of shape (n_betas, n_alphas)
    """
    scores = np.empty((len(betas), len(alphas)))
    values = values.astype(affinity.dtype, copy=False)
    for b, beta in enumerate(betas):
        # A Python float keeps float32 affinities in float32; a NumPy float64
        # would promote them, and the mixed-type product below would leave
        # BLAS for a loop many times slower.
        beta = float(beta)
        votes = np.exp(-(beta - beta * affinity))
        if exclude_self:
            np.fill_diagonal(votes, 0)
        cache = votes @ values
        scores[b] = _score_alphas(cache, clip, y_indices, alphas, scoring)
    return scores


def clip_logits(queries, text_weights):
    """Zero-shot logits ``(100 * queries) @ W.T``, or ``None`` without text."""
    if text_weights is None:
        return None
    return (CLIP_LOGIT_SCALE * queries) @ text_weights.T


def _score_alphas(cache, clip, y_indices, alphas, scoring):
    alphas = alphas.astype(cache.dtype)
    if scoring == "accuracy":
        # Several alphas at once, (n_chunk, n_queries, n_classes), in chunks of
        # at most 2**25 numbers (256 MiB in float64).
        scores = np.empty(len(alphas))
        chunk = max(1, 2**25 // max(cache.size, 1))
        for start in range(0, len(alphas), chunk):
            logits = np.multiply.outer(alphas[start : start + chunk], cache)
            if clip is not None:
                logits += clip
            correct = np.argmax(logits, axis=2) == y_indices
            scores[start : start + chunk] = correct.mean(axis=1)
        return scores

    scores = np.empty(len(alphas))
    for a, alpha in enumerate(alphas):
        logits = _logits(clip, cache, float(alpha))
        if scoring == "balanced_accuracy":
            scores[a] = balanced_accuracy_score(y_indices, np.argmax(logits, axis=1))
        else:
            log_proba = log_softmax(logits, axis=1)
            scores[a] = log_proba[np.arange(len(y_indices)), y_indices].mean()
    return scores


def _logits(clip, cache, alpha):
    return cache * alpha if clip is None else clip + cache * alpha
