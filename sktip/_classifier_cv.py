"""``TipAdapterClassifierCV``: Tip-Adapter with alpha and beta chosen by
cross-validation on the shots, in one vectorised pass over the grid."""

import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.base import _fit_context
from sklearn.model_selection import check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_array, column_or_1d

from sktip import _cache
from sktip._classifier import TipAdapterClassifier
from sktip._search import clip_logits, grid_scores
from sktip.exceptions import SingleShotWarning, _caller_stacklevel

_SCORINGS = ("accuracy", "balanced_accuracy", "neg_log_loss")


class TipAdapterClassifierCV(TipAdapterClassifier):
    """Tip-Adapter with alpha and beta chosen by cross-validation.

    The residual ratio ``alpha`` and the sharpness ``beta`` are searched on
    a grid. Every (beta, alpha) pair of the grid is scored on held-out shots, the
    best pair is kept as ``alpha_`` and ``beta_``, and the classifier is
    refitted on all of ``X``. Scoring the grid costs about as much as one
    prediction per beta: the affinities between held-out shots and keys are
    computed once, and each alpha is a scaled addition. The featurizer
    encodes every image once for the whole search.

    See the glossary entry for cross-validation estimator in scikit-learn.

    Parameters
    ----------
    featurizer : object or None, default=None
        As in :class:`TipAdapterClassifier`.
    alphas : array-like of float, default=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
        Candidate residual ratios, scanned in this order in the inner loop.
    betas : array-like of float, default=(1.0, 2.0, 3.5, 5.5, 7.5, 9.5, 12.0)
        Candidate sharpnesses, scanned in this order in the outer loop. Use
        :func:`~sktip.reference_grid` to reproduce the reference's grids.
    cv : int, cross-validation generator, iterable or None, default=None
        How the shots are split. ``None`` is leave-one-out: every shot is
        scored by the cache of all the others, which works with one shot per
        class. An int is the number of stratified folds; a splitter or an
        iterable of (train, test) index arrays is used as given. Ignored
        when ``fit`` receives ``X_val``.
    scoring : {"accuracy", "balanced_accuracy", "neg_log_loss"} or None, \
            default=None
        Score to maximise; ``None`` is accuracy.
    alpha : float, default=1.0
        Residual ratio held fixed while fine-tuning (``finetune=True``); not
        used for prediction, which uses ``alpha_``.
    beta : float, default=5.5
        Sharpness held fixed while fine-tuning; prediction uses ``beta_``.
    text_features : array-like of shape (n_classes, n_features), mapping or \
            None, default=None
        As in :class:`TipAdapterClassifier`.
    class_names : mapping or None, default=None
        As in :class:`TipAdapterClassifier`.
    templates : str, sequence of str or None, default=None
        As in :class:`TipAdapterClassifier`.
    augment_views : int, default=10
        As in :class:`TipAdapterClassifier`.
    finetune : bool, default=False
        As in :class:`TipAdapterClassifier`.
    max_iter : int, default=20
        As in :class:`TipAdapterClassifier`.
    batch_size : int, default=256
        As in :class:`TipAdapterClassifier`.
    learning_rate_init : float, default=1e-3
        As in :class:`TipAdapterClassifier`.
    epsilon : float, default=1e-4
        As in :class:`TipAdapterClassifier`.
    weight_decay : float, default=0.01
        As in :class:`TipAdapterClassifier`.
    early_stopping : bool, default=False
        As in :class:`TipAdapterClassifier`.
    validation_fraction : float, default=0.1
        As in :class:`TipAdapterClassifier`.
    n_iter_no_change : int, default=10
        As in :class:`TipAdapterClassifier`.
    tol : float, default=1e-4
        As in :class:`TipAdapterClassifier`.
    random_state : int, RandomState instance or None, default=None
        As in :class:`TipAdapterClassifier`.
    verbose : int, default=0
        As in :class:`TipAdapterClassifier`.

    Attributes
    ----------
    alpha_ : float
        Selected residual ratio.
    beta_ : float
        Selected sharpness.
    best_score_ : float
        Mean held-out score of the selected pair (accuracy as a fraction).
    best_index_ : int
        Index of the selected pair in ``cv_results_``.
    cv_results_ : dict of ndarray
        One entry per (beta, alpha) pair, betas in the outer order:
        ``params``, ``param_alpha``, ``param_beta``, ``mean_test_score``,
        ``std_test_score``, ``rank_test_score`` and, except for
        leave-one-out, ``split{k}_test_score``. For leave-one-out the
        standard deviation is over the shots.
    n_splits_ : int
        Number of splits scored (the number of shots for leave-one-out).
    classes_, cache_keys_, cache_values_, text_features_, n_features_in_
        As in :class:`TipAdapterClassifier`, refitted on all of ``X``.
    finetuned_keys_, finetuned_values_, loss_curve_, n_iter_, \
            validation_scores_, best_validation_score_
        As in :class:`TipAdapterClassifier`, when ``finetune=True``.

    See Also
    --------
    TipAdapterClassifier : The same model at a fixed alpha and beta.
    reference_grid : The reference's grid of candidates.

    Notes
    -----
    Ties go to the first pair in scan order (betas outer, alphas inner), and
    a pair replaces the best only with a strictly higher score, as in the
    reference search.

    In cross-validation the held-out shots are queried with their cache keys
    (in the featurizer mode, the average of their augmented views), not
    with a separate un-augmented encoding; only ``X_val`` is encoded like a
    query at prediction time.

    With ``finetune=True`` the keys are fine-tuned at the fixed ``alpha``
    and ``beta``, as the reference does, and the grid only changes the pair
    used for prediction. Selection never looks at shots the keys were
    trained on: each fold fine-tunes its own copy of the keys on its
    training part, or the keys are fine-tuned on ``X`` and scored on
    ``X_val``. Leave-one-out would need one fine-tuning per shot and is
    refused.

    Examples
    --------
    >>> import numpy as np
    >>> from sktip import TipAdapterClassifierCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 8))
    >>> y = np.repeat([0, 1, 2], 10)
    >>> X += 3 * np.eye(8)[y]
    >>> clf = TipAdapterClassifierCV(alphas=(0.5, 1.0), betas=(1.0, 5.5)).fit(X, y)
    >>> clf.cv_results_["params"][clf.best_index_] == {
    ...     "alpha": clf.alpha_, "beta": clf.beta_}
    True
    """

    _parameter_constraints = {
        **TipAdapterClassifier._parameter_constraints,
        "alphas": ["array-like"],
        "betas": ["array-like"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(_SCORINGS)), None],
    }

    def __init__(
        self,
        featurizer=None,
        *,
        alphas=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0),
        betas=(1.0, 2.0, 3.5, 5.5, 7.5, 9.5, 12.0),
        cv=None,
        scoring=None,
        alpha=1.0,
        beta=5.5,
        text_features=None,
        class_names=None,
        templates=None,
        augment_views=10,
        finetune=False,
        max_iter=20,
        batch_size=256,
        learning_rate_init=1e-3,
        epsilon=1e-4,
        weight_decay=0.01,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            featurizer,
            alpha=alpha,
            beta=beta,
            text_features=text_features,
            class_names=class_names,
            templates=templates,
            augment_views=augment_views,
            finetune=finetune,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            epsilon=epsilon,
            weight_decay=weight_decay,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            random_state=random_state,
            verbose=verbose,
        )
        self.alphas = alphas
        self.betas = betas
        self.cv = cv
        self.scoring = scoring

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_val=None, y_val=None):
        """Choose alpha and beta, then refit on all of ``X``.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)
            The shots: images with a featurizer, embeddings otherwise.
        y : array-like of shape (n_samples,)
            Class labels of the shots.
        X_val : sequence of images or array-like of shape (n_val, n_features), \
                default=None
            A separate validation set, as in the reference's protocol: the
            cache is built from ``X`` alone and the grid is scored on
            ``X_val``. ``cv`` is then ignored.
        y_val : array-like of shape (n_val,), default=None
            Labels of ``X_val``; each must be a label of ``y``.

        Returns
        -------
        self : TipAdapterClassifierCV
            The fitted classifier.
        """
        return self._fit_atomically(self._fit_cv, X, y, X_val, y_val)

    def _fit_cv(self, X, y, X_val, y_val):
        alphas = _check_grid(self.alphas, "alphas")
        betas = _check_grid(self.betas, "betas")
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together.")
        if self.finetune and self.cv is None and X_val is None:
            raise ValueError(
                "finetune=True with cv=None would fine-tune once per shot for "
                "leave-one-out; pass cv=<number of folds> or X_val and y_val."
            )

        rng = check_random_state(self.random_state)
        support = self._encode_support_set(X, y, rng)
        if X_val is not None:
            scores = self._score_validation_set(
                support, X_val, y_val, alphas, betas, rng
            )
            split_scores = scores[np.newaxis]
        elif self.cv is None:
            split_scores = None
            loo = self._score_leave_one_out(support, alphas, betas)
        else:
            split_scores = self._score_folds(support, alphas, betas, rng)

        if split_scores is not None:
            mean, std = split_scores.mean(axis=0), split_scores.std(axis=0)
            n_splits = len(split_scores)
        else:
            mean, std, n_splits = loo
        fitted = _results(alphas, betas, mean, std, split_scores)
        fitted["n_splits_"] = n_splits

        # Refit on every shot, reusing the encoding of the search.
        fitted.update(self._fitted_attributes(support, rng))
        return fitted

    def _score_validation_set(self, support, X_val, y_val, alphas, betas, rng):
        queries = self._validation_queries(X_val, support.keys.shape[1])
        y_val = column_or_1d(y_val)
        if len(y_val) != len(queries):
            raise ValueError(
                f"X_val holds {len(queries)} samples but y_val holds {len(y_val)}."
            )
        unknown = sorted(set(y_val.tolist()) - set(support.classes.tolist()))
        if unknown:
            raise ValueError(
                f"y_val holds label(s) {unknown[:10]!r} that y does not; "
                "validation labels must be classes of the shots."
            )
        y_indices = np.searchsorted(support.classes, y_val)

        keys, values = self._search_cache(support, np.arange(len(support.keys)), rng)
        affinity = queries @ keys.T
        clip = clip_logits(queries, support.text)
        return grid_scores(
            affinity, clip, values, y_indices, alphas, betas, self._scoring()
        )

    def _score_leave_one_out(self, support, alphas, betas):
        counts = np.bincount(support.class_indices, minlength=len(support.classes))
        if np.any(counts == 1):
            single = support.classes[counts == 1][:10].tolist()
            warnings.warn(
                f"class(es) {single} have a single shot: held out, their cache "
                "holds no key of their class, so leave-one-out scores them by the "
                "zero-shot term alone and leans towards a small alpha. Give more "
                "shots, or pass X_val.",
                SingleShotWarning,
                stacklevel=_caller_stacklevel(),
            )
        keys = support.keys
        values = _cache.one_hot(support.class_indices, len(support.classes), keys.dtype)
        affinity = keys @ keys.T
        clip = clip_logits(keys, support.text)
        mean = grid_scores(
            affinity,
            clip,
            values,
            support.class_indices,
            alphas,
            betas,
            self._scoring(),
            exclude_self=True,
        )
        std = np.full_like(mean, np.nan)
        if self._scoring() == "accuracy":
            # The spread over shots of a 0/1 score follows from its mean.
            std = np.sqrt(mean * (1 - mean))
        return mean, std, len(keys)

    def _score_folds(self, support, alphas, betas, rng):
        splitter = check_cv(self.cv, support.class_indices, classifier=True)
        folds = list(splitter.split(support.keys, support.class_indices))
        affinity = None if self.finetune else support.keys @ support.keys.T
        clip = clip_logits(support.keys, support.text)
        scores = []
        for train, test in folds:
            keys, values = self._search_cache(support, train, rng)
            fold_affinity = (
                support.keys[test] @ keys.T
                if affinity is None
                else affinity[np.ix_(test, train)]
            )
            scores.append(
                grid_scores(
                    fold_affinity,
                    None if clip is None else clip[test],
                    values,
                    support.class_indices[test],
                    alphas,
                    betas,
                    self._scoring(),
                )
            )
        return np.stack(scores)

    def _search_cache(self, support, train, rng):
        """Keys and values of the cache built from the shots at ``train``,
        fine-tuned when ``finetune=True``."""
        subset = support.subset(train)
        values = _cache.one_hot(
            subset.class_indices, len(support.classes), support.keys.dtype
        )
        if not self.finetune:
            return subset.keys, values
        tuned = self._finetune(subset, values, rng)
        return tuned["finetuned_keys_"], tuned["finetuned_values_"]

    def _validation_queries(self, X_val, n_features):
        if self.featurizer is None:
            X_val = check_array(X_val, dtype=[np.float64, np.float32])
            if X_val.shape[1] != n_features:
                raise ValueError(
                    f"X_val has {X_val.shape[1]} features, but X has {n_features}."
                )
            return _cache.l2_normalize(X_val)
        return _cache.l2_normalize(np.asarray(self.featurizer.transform(X_val)))

    def _scoring(self):
        return "accuracy" if self.scoring is None else self.scoring

    def _inference_pair(self):
        return self.alpha_, self.beta_


def _check_grid(grid, name):
    grid = np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(
            f"{name} must be a non-empty sequence of finite, non-negative "
            f"numbers, got {grid!r}."
        )
    return grid


def _results(alphas, betas, mean, std, split_scores):
    """``cv_results_`` and the selected pair, betas in the outer order."""
    pairs = [(float(a), float(b)) for b in betas for a in alphas]
    mean, std = mean.ravel(), std.ravel()
    # argmax returns the first maximum: a later pair must be strictly better.
    best = int(np.argmax(mean))
    results = {
        "params": [{"alpha": a, "beta": b} for a, b in pairs],
        "param_alpha": np.array([a for a, _ in pairs]),
        "param_beta": np.array([b for _, b in pairs]),
        "mean_test_score": mean,
        "std_test_score": std,
        "rank_test_score": rankdata(-mean, method="min").astype(np.int32),
    }
    if split_scores is not None:
        for k, scores in enumerate(split_scores):
            results[f"split{k}_test_score"] = scores.ravel()
    return {
        "cv_results_": results,
        "best_index_": best,
        "best_score_": float(mean[best]),
        "alpha_": pairs[best][0],
        "beta_": pairs[best][1],
    }
