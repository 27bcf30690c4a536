"""Property-based tests of the cache maths and of input validation."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sktip import TipAdapterClassifier, TipAdapterClassifierCV
from sktip._cache import l2_normalize, tip_logits

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def problems(draw):
    """A few-shot problem: shots, labels, text classifier and queries."""
    n_classes = draw(st.integers(2, 5))
    dim = draw(st.integers(1, 8))
    n_shots = draw(st.integers(n_classes, 16))
    # Magnitudes below 1e-6 are left out: squares of the tiniest floats
    # underflow, and no embedding model produces them.
    finite = st.one_of(st.just(0.0), st.floats(1e-6, 10), st.floats(-10, -1e-6))
    X = draw(arrays(np.float64, (n_shots, dim), elements=finite))
    # Every class gets at least one shot, the rest at random.
    extra = draw(arrays(np.int64, n_shots - n_classes, elements=st.integers(0, 4)))
    y = np.concatenate([np.arange(n_classes), extra % n_classes])
    text = draw(arrays(np.float64, (n_classes, dim), elements=finite))
    # A class's text vector must point somewhere (zeros are refused).
    text[~np.any(text != 0, axis=1), 0] = 1.0
    queries = draw(arrays(np.float64, (draw(st.integers(1, 6)), dim), elements=finite))
    alpha = draw(st.floats(0, 20))
    beta = draw(st.floats(0, 20))
    return X, y, text, queries, alpha, beta


def formula(X, y, text, queries, alpha, beta):
    """The paper's logits, computed the plain way in float64."""
    F, keys, W = l2_normalize(queries), l2_normalize(X), l2_normalize(text)
    values = np.eye(y.max() + 1)[y]
    return 100 * F @ W.T + alpha * np.exp(-beta * (1 - F @ keys.T)) @ values


@SETTINGS
@given(problems())
def test_logits_follow_the_formula(problem):
    X, y, text, queries, alpha, beta = problem
    clf = TipAdapterClassifier(alpha=alpha, beta=beta, text_features=text).fit(X, y)
    logits = tip_logits(
        clf._query_features(queries),
        clf.cache_keys_,
        clf.cache_values_,
        clf.text_features_,
        alpha,
        beta,
    )
    np.testing.assert_allclose(
        logits, formula(X, y, text, queries, alpha, beta), rtol=1e-9, atol=1e-9
    )


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_order_of_the_shots_does_not_matter(problem, random):
    X, y, text, queries, alpha, beta = problem
    order = list(range(len(X)))
    random.shuffle(order)
    params = dict(alpha=alpha, beta=beta, text_features=text)
    first = TipAdapterClassifier(**params).fit(X, y)
    shuffled = TipAdapterClassifier(**params).fit(X[order], y[order])

    np.testing.assert_allclose(
        first.predict_proba(queries), shuffled.predict_proba(queries), atol=1e-9
    )


@SETTINGS
@given(problems(), st.floats(0.01, 100))
def test_rescaled_embeddings_give_the_same_model(problem, scale):
    X, y, text, queries, alpha, beta = problem
    params = dict(alpha=alpha, beta=beta, text_features=text)
    plain = TipAdapterClassifier(**params).fit(X, y)
    scaled = TipAdapterClassifier(**params).fit(X * scale, y)

    np.testing.assert_allclose(
        plain.decision_function(queries),
        scaled.decision_function(queries * scale),
        rtol=1e-9,
        atol=1e-7,
    )


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6))))
def test_normalised_rows_have_unit_or_zero_norm(features):
    if not np.all(np.isfinite(features)):
        return
    norms = np.linalg.norm(l2_normalize(features), axis=1)
    zero = np.all(features == 0, axis=1)
    np.testing.assert_allclose(norms[~zero], 1.0)
    assert np.all(norms[zero] == 0)


@SETTINGS
@given(problems())
def test_probabilities_are_a_distribution(problem):
    X, y, text, queries, alpha, beta = problem
    proba = TipAdapterClassifier(alpha=alpha, beta=beta, text_features=text)
    proba = proba.fit(X, y).predict_proba(queries)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@SETTINGS
@given(
    st.sampled_from(["nan", "inf", "-inf"]),
    st.integers(0, 5),
    st.sampled_from(["fit", "predict"]),
)
def test_non_finite_embeddings_are_refused(value, row, where):
    rng = np.random.default_rng(row)
    X, y = rng.normal(size=(6, 3)), np.array([0, 0, 1, 1, 2, 2])
    bad = X.copy()
    bad[row, row % 3] = float(value)
    clf = TipAdapterClassifier()
    with pytest.raises(ValueError, match="NaN|infinity"):
        if where == "fit":
            clf.fit(bad, y)
        else:
            clf.fit(X, y).predict(bad)


@pytest.mark.filterwarnings("ignore::sktip.exceptions.SingleShotWarning")
@SETTINGS
@given(
    n_samples=st.integers(0, 6),
    n_labels=st.integers(0, 6),
    n_features=st.integers(1, 4),
    n_classes=st.integers(1, 3),
    estimator=st.sampled_from([TipAdapterClassifier, TipAdapterClassifierCV]),
)
def test_bad_shapes_raise_value_errors(
    n_samples, n_labels, n_features, n_classes, estimator
):
    """Whatever the mismatch, the error is a ValueError with a message."""
    X = np.ones((n_samples, n_features))
    y = np.arange(n_labels) % n_classes
    valid = n_samples == n_labels and len(np.unique(y)) >= 2
    if valid:
        estimator().fit(X, y)
        return
    with pytest.raises(ValueError) as error:
        estimator().fit(X, y)
    assert str(error.value)


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_encoding_keeps_previous_fit(interruption):
    class Featurizer:
        """Plays a featurizer until it is told to fail."""

        fail = False

        def transform(self, images):
            return np.asarray(images, dtype=np.float64)

        def encode_views(self, images, n_views, random_state):
            if self.fail:
                raise interruption("stopped while encoding")
            return np.repeat(self.transform(images)[:, None], n_views, axis=1)

    featurizer = Featurizer()
    clf = TipAdapterClassifier(featurizer, augment_views=2)
    clf.fit([[1.0, 0.0], [0.0, 1.0]], ["a", "b"])
    before = dict(vars(clf))

    featurizer.fail = True
    with pytest.raises(interruption):
        clf.fit([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], ["c", "d", "e"])
    assert vars(clf).keys() == before.keys()
    assert all(vars(clf)[name] is value for name, value in before.items())


@pytest.mark.parametrize("method", ["transform", "encode_views", "encode_text"])
def test_non_finite_featurizer_output_names_the_item(method):
    class Featurizer:
        def transform(self, images):
            features = np.eye(3)[: len(images)]
            if method == "transform":
                features[1, 0] = np.nan
            return features

        def encode_views(self, images, n_views, random_state):
            views = np.repeat(np.eye(3)[: len(images), None], n_views, axis=1)
            if method == "encode_views":
                views[1, 0, 0] = np.inf
            return views

        def encode_text(self, prompts):
            features = np.eye(3)[: len(prompts)]
            if method == "encode_text":
                features[1, 0] = np.nan
            return features

    views = 0 if method == "transform" else 2
    clf = TipAdapterClassifier(Featurizer(), augment_views=views)
    with pytest.raises(ValueError, match=rf"featurizer\.{method}.*index \[1\]"):
        clf.fit(["a", "b", "c"], [0, 1, 2])


def test_normalising_extreme_magnitudes():
    features = np.array([[1e300, 1e300], [1e-170, 2e-170], [0.0, 0.0], [3.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalised = l2_normalize(features)
    np.testing.assert_allclose(
        normalised, [[2**-0.5, 2**-0.5], [5**-0.5, 2 * 5**-0.5], [0, 0], [0.6, 0.8]]
    )
