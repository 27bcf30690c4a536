"""``TipAdapterClassifier``: the Tip-Adapter cache model as a classifier."""

import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from sktip import _cache
from sktip._finetune import finetune_keys
from sktip._models import resolve_device
from sktip.templates import class_name_list, make_prompts, resolve_templates


class TipAdapterClassifier(ClassifierMixin, BaseEstimator):
    """Training-free few-shot classifier on CLIP embeddings (Tip-Adapter).

    The few-shot training images form a key-value cache: the keys are
    their L2-normalised embeddings, the values their one-hot labels. A
    query's logits add the zero-shot CLIP logits of the class prompts to the
    cache's vote, in which each shot counts ``exp(-beta * (1 - cos))``
    times its label::

        logits = 100 * F @ W.T + alpha * exp(-beta * (1 - F @ keys.T)) @ values

    Parameters
    ----------
    featurizer : object or None, default=None
        Turns images into embeddings; see the featurizer protocol in
        :mod:`sktip` (``CLIPFeaturizer`` follows it). With a featurizer,
        ``X`` is a sequence of images. With ``None``, ``X`` is an array of
        embeddings of shape (n_samples, n_features).
    alpha : float, default=1.0
        Residual ratio: the weight of the cache logits against the zero-shot
        logits. 0 gives zero-shot CLIP. Larger values trust the few shots
        more, which helps when the images are far from CLIP's training
        distribution.
    beta : float, default=5.5
        Sharpness: how fast a shot's vote decays as its cosine similarity to
        the query drops. The default is the paper's best value on ImageNet.
    text_features : array-like of shape (n_classes, n_features), mapping or \
            None, default=None
        Zero-shot text embedding of every class, rows in the order of
        ``classes_`` (sorted labels), or a mapping from each label to its
        vector. Rows are L2-normalised by the classifier. When ``None``, the
        text classifier is built with the featurizer from ``class_names``
        and ``templates``; in the embeddings mode the model is then
        cache-only (no zero-shot term).
    class_names : mapping or None, default=None
        Name of each class label, used in the prompts. ``None`` uses
        ``str(label)`` with underscores turned into spaces.
    templates : str, sequence of str or None, default=None
        Prompt templates, each with one ``{}`` for the class name, or the
        name of a set in :data:`sktip.templates.TEMPLATES` such as
        ``"imagenet"``. ``None`` uses ``"a photo of a {}."``.
    augment_views : int, default=10
        Augmented views of every training image whose raw features are
        averaged into its cache key, as in the reference. 0 encodes each
        training image once, without augmentation. Ignored in the
        embeddings mode.
    finetune : bool, default=False
        Fine-tune the cache keys (Tip-Adapter-F): a copy of the keys is
        trained by gradient descent on the cross-entropy of the Tip logits at
        this ``alpha`` and ``beta``; values, text classifier and encoders stay
        frozen. The training-free keys stay available in ``cache_keys_``.
    max_iter : int, default=20
        Fine-tuning epochs, and the length of the cosine learning-rate
        schedule.
    batch_size : int, default=256
        Fine-tuning mini-batch size.
    learning_rate_init : float, default=1e-3
        AdamW's learning rate at the start of the cosine schedule.
    epsilon : float, default=1e-4
        AdamW's ``eps``.
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay, applied to the keys as in the
        reference.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the shots, fine-tune
        the cache of the others, keep the keys of the epoch with the best
        accuracy on the held-out shots and stop after ``n_iter_no_change``
        epochs without an improvement of at least ``tol``. The held-out
        shots are left out of the fine-tuned cache. Test data are never
        used.
    validation_fraction : float, default=0.1
        Share of the shots held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without improvement before early stopping ends training.
    tol : float, default=1e-4
        Smallest gain of held-out accuracy that counts as an improvement.
    random_state : int, RandomState instance or None, default=None
        Seed of the augmentation, of the fine-tuning shuffles and view draws
        and of the early-stopping split. Pass an int for a reproducible fit.
    verbose : int, default=0
        Show a progress bar with the loss of every fine-tuning epoch when
        positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    cache_keys_ : ndarray of shape (n_support, n_features)
        L2-normalised embeddings of the training samples, in input order.
    cache_values_ : ndarray of shape (n_support, n_classes)
        One-hot labels of the training samples.
    text_features_ : ndarray of shape (n_classes, n_features) or None
        L2-normalised zero-shot classifier, ``None`` for a cache-only model.
    n_features_in_ : int
        Number of features of ``X``, in the embeddings mode only.
    finetuned_keys_ : ndarray of shape (n_tuned, n_features)
        Fine-tuned keys, used for prediction when ``finetune=True``. Not
        renormalised after training, as in the reference.
    finetuned_values_ : ndarray of shape (n_tuned, n_classes)
        One-hot labels of the fine-tuned keys: all of ``cache_values_``, or
        the shots not held out for early stopping.
    loss_curve_ : list of float
        Mean training loss of every fine-tuning epoch.
    n_iter_ : int
        Fine-tuning epochs run.
    validation_scores_ : list of float or None
        Held-out accuracy after every epoch, with ``early_stopping=True``.
    best_validation_score_ : float or None
        Best held-out accuracy, whose keys were kept.

    See Also
    --------
    CLIPFeaturizer : Encodes images and prompts with open_clip.

    Notes
    -----
    The arithmetic follows the reference implementation step by step
    (logit scale 100, ``exp(-(beta - beta * A))``), in the precision of the
    embeddings: float32 here against the reference's float16 on GPU, which
    moves published accuracies by about 0.1 percentage point.

    Fine-tuning follows the reference's update rule but not its cost: each
    image is encoded once, with ``augment_views`` augmented views, and each
    epoch trains on one of those views per image instead of re-encoding
    newly augmented images. In the embeddings mode every epoch sees the
    given embeddings. The reference picks its best epoch on the test set;
    here the last epoch is kept, or with ``early_stopping`` the best epoch on
    held-out shots.

    Probabilities are the softmax of the logits. With CLIP's logit scale of
    100 they are very confident and not calibrated.

    References
    ----------
    Zhang, R. et al. "Tip-Adapter: Training-free Adaption of CLIP for
    Few-shot Classification." ECCV 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sktip import TipAdapterClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 8))
    >>> y = np.repeat(["cat", "dog"], 10)
    >>> X[y == "dog"] += 2.0
    >>> clf = TipAdapterClassifier(alpha=1.0, beta=5.5).fit(X, y)
    >>> clf.predict(X[[0, -1]])
    array(['cat', 'dog'], dtype='<U3')
    """

    _parameter_constraints = {
        "featurizer": [HasMethods(["transform"]), None],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, None, closed="left")],
        "text_features": ["array-like", Mapping, None],
        "class_names": [Mapping, None],
        "templates": [str, list, tuple, None],
        "augment_views": [Interval(numbers.Integral, 0, None, closed="left")],
        "finetune": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        featurizer=None,
        *,
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
        self.featurizer = featurizer
        self.alpha = alpha
        self.beta = beta
        self.text_features = text_features
        self.class_names = class_names
        self.templates = templates
        self.augment_views = augment_views
        self.finetune = finetune
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Build the cache and the zero-shot classifier.

        With ``finetune=True``, the cache keys are then fine-tuned.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)
            Images when a featurizer is set, embeddings otherwise.
        y : array-like of shape (n_samples,)
            Class labels of any hashable type.

        Returns
        -------
        self : TipAdapterClassifier
            The fitted classifier.
        """
        return self._fit_atomically(self._fit, X, y)

    def _fit_atomically(self, fit_function, *args, **kwargs):
        """Run ``fit_function``, which returns the fitted attributes as a dict,
        and publish them only if it succeeds.

        The snapshot also undoes what ``validate_data`` sets on the way, so a
        failed or interrupted fit leaves a previous fit exactly as it was.
        """
        snapshot = self.__dict__.copy()
        try:
            for name in [name for name in vars(self) if _is_fitted_name(name)]:
                delattr(self, name)
            fitted = fit_function(*args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise
        self.__dict__.update(fitted)
        return self

    def _fit(self, X, y):
        rng = check_random_state(self.random_state)
        support = self._encode_support_set(X, y, rng)
        return self._fitted_attributes(support, rng)

    def _fitted_attributes(self, support, rng):
        """The fitted attributes for an encoded training set, as a dict."""
        values = _cache.one_hot(
            support.class_indices, len(support.classes), support.keys.dtype
        )
        fitted = {
            "classes_": support.classes,
            "cache_keys_": support.keys,
            "cache_values_": values,
            "text_features_": support.text,
        }
        if self.finetune:
            fitted.update(self._finetune(support, values, rng))
        return fitted

    def _encode_support_set(self, X, y, rng):
        """Validate the training data and encode it once.

        Returns
        -------
        support : _Support
        """
        if self.featurizer is None:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        else:
            y = column_or_1d(y, warn=True)
            _check_same_length(X, y)
        check_classification_targets(y)
        classes, class_indices = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                "TipAdapterClassifier needs samples of at least two classes; "
                f"y holds one class only: {classes[0].item()!r}."
                if len(classes)
                else "y is empty; fit needs at least one sample per class."
            )

        if self.featurizer is None:
            keys = _cache.l2_normalize(X)
            views = keys[:, np.newaxis, :]
            text = self._text_features_from_parameter(classes, keys.shape[1])
        else:
            views = self._encode_views(X, rng)
            keys = _cache.average_views(views)
            views = _cache.l2_normalize(views)
            text = self._text_features_from_parameter(classes, keys.shape[1])
            if text is None:
                text = self._encode_text_classifier(classes)
            if text is not None and text.shape[1] != keys.shape[1]:
                raise ValueError(
                    f"featurizer.encode_text returned {text.shape[1]} features "
                    f"per prompt but the image features have {keys.shape[1]}; "
                    "both must live in one embedding space."
                )
        return _Support(classes, class_indices, keys, views, text)

    def _finetune(self, support, values, rng):
        """Fine-tune a copy of the keys; returns the fitted attributes."""
        seed = rng.randint(np.iinfo(np.int32).max)
        # A slice, not an index array: indexing would copy every feature.
        train = slice(None)
        validation = None
        if self.early_stopping:
            train, held_out = _stratified_split(
                support.class_indices, self.validation_fraction, rng
            )
            validation = (support.keys[held_out], support.class_indices[held_out])

        result = finetune_keys(
            support.keys[train],
            support.class_indices[train],
            len(support.classes),
            support.text,
            support.views[train],
            support.class_indices[train],
            alpha=self.alpha,
            beta=self.beta,
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init,
            epsilon=self.epsilon,
            weight_decay=self.weight_decay,
            seed=seed,
            device=self._finetune_device(),
            validation=validation,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=self.verbose,
        )
        return {
            "finetuned_keys_": result.keys,
            "finetuned_values_": values if validation is None else values[train],
            "loss_curve_": result.loss_curve,
            "n_iter_": result.n_iter,
            "validation_scores_": result.validation_scores,
            "best_validation_score_": result.best_validation_score,
        }

    def _finetune_device(self):
        device = getattr(self.featurizer, "device", "auto")
        return resolve_device(device if isinstance(device, str) else "auto")

    def decision_function(self, X):
        """Tip-Adapter logits.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)
            Images when a featurizer is set, embeddings otherwise.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            Logits in the order of ``classes_``. With two classes, the
            difference ``logit[1] - logit[0]``, positive for ``classes_[1]``.
        """
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Softmax of the logits.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)
            Images when a featurizer is set, embeddings otherwise.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities in the order of ``classes_``.
        """
        return softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Most likely class of every sample.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)
            Images when a featurizer is set, embeddings otherwise.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The class of highest logit, a label of ``classes_``.
        """
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def _query_features(self, X):
        check_is_fitted(self)
        if self.featurizer is None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            return _cache.l2_normalize(X)
        features = _featurizer_output(
            self.featurizer.transform(X), "transform", (_length(X),)
        )
        if features.shape[1] != self.cache_keys_.shape[1]:
            raise ValueError(
                f"{type(self.featurizer).__name__}.transform returned "
                f"{features.shape[1]} features per image, but the cache was built "
                f"with {self.cache_keys_.shape[1]}; was the featurizer changed "
                "after fit?"
            )
        return _cache.l2_normalize(features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.featurizer is not None:
            tags.input_tags.two_d_array = False
            tags.input_tags.one_d_array = True
            tags.input_tags.string = True
        return tags

    def _logits(self, X):
        queries = self._query_features(X)
        if self.finetune:
            keys, values = self.finetuned_keys_, self.finetuned_values_
        else:
            keys, values = self.cache_keys_, self.cache_values_
        alpha, beta = self._inference_pair()
        return _cache.tip_logits(
            queries, keys, values, self.text_features_, alpha, beta
        )

    def _inference_pair(self):
        """The (alpha, beta) used for prediction."""
        return self.alpha, self.beta

    def _encode_views(self, X, rng):
        """Raw features of shape (n_samples, n_views, d); one plain view when
        ``augment_views=0``."""
        if self.augment_views == 0:
            features = _featurizer_output(
                self.featurizer.transform(X), "transform", (_length(X),)
            )
            return features[:, np.newaxis, :]
        if not hasattr(self.featurizer, "encode_views"):
            raise TypeError(
                f"{type(self.featurizer).__name__} has no encode_views method; "
                "set augment_views=0 to build the cache from plain embeddings."
            )
        seed = rng.randint(np.iinfo(np.int32).max)
        views = self.featurizer.encode_views(
            X, n_views=self.augment_views, random_state=seed
        )
        return _featurizer_output(
            views, "encode_views", (_length(X), self.augment_views)
        )

    def _encode_text_classifier(self, classes):
        if not hasattr(self.featurizer, "encode_text"):
            return None
        names = class_name_list(classes, self.class_names)
        templates = resolve_templates(self.templates)
        prompts = make_prompts(names, templates)
        prompt_features = _featurizer_output(
            self.featurizer.encode_text(prompts), "encode_text", (len(prompts),)
        )
        return _cache.text_classifier(prompt_features, len(classes))

    def _text_features_from_parameter(self, classes, n_features):
        if self.text_features is None:
            if self.featurizer is None and (
                self.class_names is not None or self.templates is not None
            ):
                raise ValueError(
                    "class_names and templates need a featurizer with encode_text "
                    "to build the zero-shot classifier; in the embeddings mode "
                    "pass text_features instead."
                )
            return None
        if isinstance(self.text_features, Mapping):
            missing = [label for label in classes if label not in self.text_features]
            if missing:
                labels = [label.item() for label in missing[:10]]
                raise ValueError(
                    f"text_features has no vector for class(es) {labels!r}; it "
                    "must map every label in classes_ to a vector."
                )
            rows = [np.asarray(self.text_features[label]) for label in classes]
            for label, row in zip(classes, rows, strict=True):
                if row.shape != (n_features,):
                    raise ValueError(
                        f"text_features[{label.item()!r}] has shape {row.shape}; "
                        f"expected ({n_features},), one value per embedding "
                        "feature."
                    )
            text = np.stack(rows)
        else:
            text = self.text_features
        try:
            text = check_array(text, dtype=[np.float64, np.float32])
        except ValueError as exc:
            raise ValueError(f"text_features: {exc}") from None
        expected = (len(classes), n_features)
        if text.shape != expected:
            raise ValueError(
                f"text_features has shape {text.shape}; expected {expected}: one "
                f"row per class in classes_ order ({classes[:5].tolist()}...) and as "
                "many columns as the image embeddings."
            )
        empty = ~np.any(text != 0, axis=1)
        if np.any(empty):
            raise ValueError(
                f"text_features holds only zeros for class(es) "
                f"{classes[empty][:10].tolist()}; a zero vector has no direction "
                "to compare images with."
            )
        return _cache.l2_normalize(text)


class _Support(NamedTuple):
    """The encoded training set."""

    classes: np.ndarray
    class_indices: np.ndarray
    keys: np.ndarray
    views: np.ndarray
    text: np.ndarray | None

    def subset(self, indices):
        """The shots at ``indices``, with all classes kept."""
        return self._replace(
            class_indices=self.class_indices[indices],
            keys=self.keys[indices],
            views=self.views[indices],
        )


def _stratified_split(class_indices, validation_fraction, rng):
    """Indices of the fine-tuning part and the held-out part of the shots."""
    indices = np.arange(len(class_indices))
    try:
        return train_test_split(
            indices,
            test_size=validation_fraction,
            stratify=class_indices,
            random_state=rng,
        )
    except ValueError as exc:
        raise ValueError(
            "early_stopping holds out a stratified validation_fraction="
            f"{validation_fraction} of the shots, which needs at least two shots "
            f"per class and one held-out shot per class: {exc}"
        ) from None


def _featurizer_output(features, method, leading):
    """Check what a featurizer returned: a finite float array whose shape
    starts with ``leading`` and has one more axis, the features."""
    features = np.asarray(features)
    expected = (*leading, "n_features")
    if (
        features.ndim != len(expected)
        or features.shape[:-1] != tuple(leading)
        or not np.issubdtype(features.dtype, np.floating)
    ):
        raise ValueError(
            f"featurizer.{method} must return a float array of shape {expected}; "
            f"got dtype {features.dtype} and shape {features.shape}."
        )
    finite = np.isfinite(features).reshape(len(features), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"featurizer.{method} returned NaN or infinite values for the "
            f"item(s) at index {bad[:10].tolist()}."
        )
    return features


def _length(X):
    try:
        return len(X)
    except TypeError:
        raise TypeError(
            f"X must be a sequence of images, got {type(X).__name__}."
        ) from None


def _is_fitted_name(name):
    return name.endswith("_") and not name.startswith("_")


def _check_same_length(X, y):
    n_samples = _length(X)
    if n_samples != len(y):
        raise ValueError(
            f"X holds {n_samples} images but y holds {len(y)} labels; they must "
            "have the same length."
        )
