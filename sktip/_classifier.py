"""``TipAdapterClassifier``: the Tip-Adapter cache model as a classifier."""

import numbers
from collections.abc import Mapping

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
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
    random_state : int, RandomState instance or None, default=None
        Seed of the augmentation. Pass an int for a reproducible cache.

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

    See Also
    --------
    CLIPFeaturizer : Encodes images and prompts with open_clip.

    Notes
    -----
    The arithmetic follows the reference implementation step by step
    (logit scale 100, ``exp(-(beta - beta * A))``), in the precision of the
    embeddings: float32 here against the reference's float16 on GPU, which
    moves published accuracies by about 0.1 percentage point.

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
        "random_state": ["random_state"],
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
        random_state=None,
    ):
        self.featurizer = featurizer
        self.alpha = alpha
        self.beta = beta
        self.text_features = text_features
        self.class_names = class_names
        self.templates = templates
        self.augment_views = augment_views
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Build the cache and the zero-shot classifier.

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
                f"y holds only the class {classes[0]!r}."
                if len(classes)
                else "y is empty; fit needs at least one sample per class."
            )

        if self.featurizer is None:
            keys = _cache.l2_normalize(X)
            text = self._text_features_from_parameter(classes, keys.shape[1])
        else:
            keys = self._encode_support(X)
            text = self._text_features_from_parameter(classes, keys.shape[1])
            if text is None:
                text = self._encode_text_classifier(classes)

        # Publish only at the end: a failure above leaves a previous fit intact.
        self.classes_ = classes
        self.cache_keys_ = keys
        self.cache_values_ = _cache.one_hot(class_indices, len(classes), keys.dtype)
        self.text_features_ = text
        return self

    def decision_function(self, X):
        """Tip-Adapter logits.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            Logits in the order of ``classes_``. With two classes, the
            difference ``logit[1] - logit[0]``, positive for ``classes_[1]``.
        """
        logits = self._logits(X)
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Softmax of the logits.

        Parameters
        ----------
        X : sequence of images or array-like of shape (n_samples, n_features)

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

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def _query_features(self, X):
        check_is_fitted(self)
        if self.featurizer is None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            return _cache.l2_normalize(X)
        return _cache.l2_normalize(np.asarray(self.featurizer.transform(X)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.featurizer is not None:
            tags.input_tags.two_d_array = False
            tags.input_tags.one_d_array = True
            tags.input_tags.string = True
        return tags

    def _logits(self, X):
        queries = self._query_features(X)
        return _cache.tip_logits(
            queries,
            self.cache_keys_,
            self.cache_values_,
            self.text_features_,
            self.alpha,
            self.beta,
        )

    def _encode_support(self, X):
        if self.augment_views == 0:
            return _cache.l2_normalize(np.asarray(self.featurizer.transform(X)))
        if not hasattr(self.featurizer, "encode_views"):
            raise TypeError(
                f"{type(self.featurizer).__name__} has no encode_views method; "
                "set augment_views=0 to build the cache from plain embeddings."
            )
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        views = self.featurizer.encode_views(
            X, n_views=self.augment_views, random_state=seed
        )
        return _cache.average_views(np.asarray(views))

    def _encode_text_classifier(self, classes):
        if not hasattr(self.featurizer, "encode_text"):
            return None
        names = class_name_list(classes, self.class_names)
        templates = resolve_templates(self.templates)
        prompts = make_prompts(names, templates)
        prompt_features = np.asarray(self.featurizer.encode_text(prompts))
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
                raise ValueError(
                    f"text_features has no vector for class(es) {missing[:10]!r}; "
                    "it must map every label in classes_ to a vector."
                )
            rows = [np.asarray(self.text_features[label]) for label in classes]
            text = check_array(np.stack(rows), dtype=[np.float64, np.float32])
        else:
            text = check_array(self.text_features, dtype=[np.float64, np.float32])
        expected = (len(classes), n_features)
        if text.shape != expected:
            raise ValueError(
                f"text_features has shape {text.shape}; expected {expected}: one "
                f"row per class in classes_ order ({list(classes[:5])}...) and as "
                "many columns as the image embeddings."
            )
        return _cache.l2_normalize(text)


def _check_same_length(X, y):
    try:
        n_samples = len(X)
    except TypeError:
        raise TypeError(
            f"X must be a sequence of images, got {type(X).__name__}."
        ) from None
    if n_samples != len(y):
        raise ValueError(
            f"X holds {n_samples} images but y holds {len(y)} labels; they must "
            "have the same length."
        )
