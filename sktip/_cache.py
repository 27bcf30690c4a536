"""The numerical core of Tip-Adapter, on NumPy arrays.

Notation follows the paper: ``F`` are L2-normalised query features
(n_queries, d), the cache keys are L2-normalised support features
(n_support, d), the cache values are one-hot labels (n_support, n_classes)
and ``W`` holds one L2-normalised text embedding per class (n_classes, d).

The Tip logits are::

    A            = F @ keys.T
    cache_logits = exp(-(beta - beta * A)) @ values
    clip_logits  = (100 * F) @ W.T
    logits       = clip_logits + cache_logits * alpha

in exactly the reference implementation's order of operations, so that
float32 results match it to the last bit where the hardware allows.
"""

import numpy as np

# CLIP's logit scale as the reference hard-codes it; the learned
# ``logit_scale`` of the model is deliberately not used.
CLIP_LOGIT_SCALE = 100.0

# Queries are scored in blocks so that the (n_queries, n_support) affinity
# matrix never has to exist whole; 16k support items x 2048 rows x 4 bytes
# is 128 MiB.
_QUERY_BLOCK = 2048


def l2_normalize(features, axis=-1):
    """Return ``features`` scaled to unit L2 norm along ``axis``.

    All-zero vectors stay zero instead of becoming NaN. The input is never
    modified in place.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(features, axis=axis, keepdims=True)
    nonzero = np.any(features != 0, axis=axis, keepdims=True)
    lost = (norms == 0) & nonzero | np.isinf(norms)
    if np.any(lost):
        # The squares under- or overflowed (entries below ~1e-154 or above
        # ~1e154): scale those vectors by their largest entry first.
        largest = np.max(np.abs(features), axis=axis, keepdims=True)
        scaled = features / np.where(lost, largest, 1)
        norms = np.where(lost, np.linalg.norm(scaled, axis=axis, keepdims=True), norms)
        features = np.where(lost, scaled, features)
    return features / np.where(norms == 0, 1, norms)


def average_views(view_features):
    """Build cache keys from the raw features of augmented views.

    The reference averages the *raw* (unnormalised) features of each image
    over its augmented views and normalises only the average.

    Parameters
    ----------
    view_features : ndarray of shape (n_samples, n_views, d)

    Returns
    -------
    keys : ndarray of shape (n_samples, d)
    """
    return l2_normalize(view_features.mean(axis=1))


def one_hot(class_indices, n_classes, dtype=np.float32):
    """Return the cache values: one row per support item, one column per class."""
    values = np.zeros((len(class_indices), n_classes), dtype=dtype)
    values[np.arange(len(class_indices)), class_indices] = 1
    return values


def text_classifier(prompt_features, n_classes):
    """Build the zero-shot classifier from prompt embeddings.

    Parameters
    ----------
    prompt_features : ndarray of shape (n_classes * n_templates, d)
        Embeddings grouped by class, as :func:`sktip.templates.make_prompts`
        orders the prompts.
    n_classes : int

    Returns
    -------
    W : ndarray of shape (n_classes, d)
        Per class: each prompt embedding normalised, averaged over the
        templates, and the average normalised again.
    """
    per_class = l2_normalize(prompt_features).reshape(
        n_classes, -1, prompt_features.shape[-1]
    )
    return l2_normalize(per_class.mean(axis=1))


def cache_logits(queries, keys, values, beta):
    """Cache term ``exp(-beta * (1 - queries @ keys.T)) @ values``.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, d)
    keys : ndarray of shape (n_support, d)
    values : ndarray of shape (n_support, n_classes)
    beta : float
        Sharpness of the affinity.

    Returns
    -------
    logits : ndarray of shape (n_queries, n_classes)
    """
    beta = float(beta)  # a NumPy float64 would promote float32 features
    affinity = queries @ keys.T
    return np.exp(-(beta - beta * affinity)) @ values


def tip_logits(queries, keys, values, text_weights, alpha, beta):
    """Tip-Adapter logits for L2-normalised ``queries``.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, d)
    keys : ndarray of shape (n_support, d)
    values : ndarray of shape (n_support, n_classes)
    text_weights : ndarray of shape (n_classes, d) or None
        ``None`` leaves out the zero-shot term (a cache-only model).
    alpha : float
        Residual ratio: weight of the cache term.
    beta : float
        Sharpness of the affinity.

    Returns
    -------
    logits : ndarray of shape (n_queries, n_classes)
    """
    alpha = float(alpha)
    dtype = np.result_type(queries, keys)
    logits = np.empty((len(queries), values.shape[1]), dtype=dtype)
    values = values.astype(dtype, copy=False)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = queries[start : start + _QUERY_BLOCK]
        cache = cache_logits(block, keys, values, beta)
        if text_weights is None:
            logits[start : start + _QUERY_BLOCK] = cache * alpha
        else:
            clip = (CLIP_LOGIT_SCALE * block) @ text_weights.T
            logits[start : start + _QUERY_BLOCK] = clip + cache * alpha
    return logits
