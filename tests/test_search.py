"""Choosing alpha and beta: the reference grid and search, leave-one-out,
k-fold and validation-set selection."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sktip import (
    REFERENCE_SEARCH_SCALES,
    TipAdapterClassifier,
    TipAdapterClassifierCV,
    reference_grid,
)
from sktip.exceptions import SingleShotWarning


def _normalized(array):
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def make_embeddings(n_classes=4, shots=6, n_val=60, dim=16, noise=1.2, seed=0):
    """Overlapping clusters, so that alpha and beta matter."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), shots)
    X = _normalized(centers[y] + noise * rng.normal(size=(len(y), dim)))
    y_val = rng.integers(n_classes, size=n_val)
    X_val = _normalized(centers[y_val] + noise * rng.normal(size=(n_val, dim)))
    text = _normalized(centers + 1.5 * rng.normal(size=centers.shape))
    return (
        X.astype(np.float32),
        y,
        X_val.astype(np.float32),
        y_val,
        text.astype(np.float32),
    )


def reference_search(val_features, val_labels, keys, values, text, betas, alphas):
    """The reference's ``search_hp``, in torch, accuracy as a fraction."""
    best_acc, best_beta, best_alpha = 0.0, 0.0, 0.0
    val_features, keys = torch.tensor(val_features), torch.tensor(keys).T
    values, text = torch.tensor(values), torch.tensor(text).T
    labels = torch.tensor(val_labels)
    for beta in betas:
        for alpha in alphas:
            affinity = val_features @ keys
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ values
            clip_logits = 100.0 * val_features @ text
            tip_logits = clip_logits + cache_logits * alpha
            pred = tip_logits.topk(1, 1, True, True)[1].t()[0]
            acc = float((pred == labels).sum()) / len(labels)
            if acc > best_acc:
                best_acc, best_beta, best_alpha = acc, beta, alpha
    return best_beta, best_alpha, best_acc


def test_reference_grid_is_bit_exact():
    for scale, steps in [(7, 200), (3, 20), (50, 200)]:
        expected = [k * (scale - 0.1) / steps + 0.1 for k in range(steps)]
        grid = reference_grid(scale, steps)
        assert grid.dtype == np.float64
        assert grid.tolist() == expected

    # linspace is mathematically equal but not bit for bit.
    linspace = np.linspace(0.1, 7, 200, endpoint=False)
    assert np.count_nonzero(linspace != reference_grid(7, 200)) > 0
    assert REFERENCE_SEARCH_SCALES["imagenet"] == (7, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_set_search_equals_reference(seed):
    X, y, X_val, y_val, text = make_embeddings(seed=seed)
    betas, alphas = reference_grid(7, 200), reference_grid(3, 20)
    clf = TipAdapterClassifierCV(alphas=alphas, betas=betas, text_features=text).fit(
        X, y, X_val=X_val, y_val=y_val
    )

    best_beta, best_alpha, best_acc = reference_search(
        X_val, y_val, X, np.eye(4, dtype=np.float32)[y], text, betas, alphas
    )
    assert (clf.beta_, clf.alpha_, clf.best_score_) == (best_beta, best_alpha, best_acc)
    assert clf.cv_results_["params"][clf.best_index_] == {
        "alpha": best_alpha,
        "beta": best_beta,
    }


def test_leave_one_out_equals_refitting_without_each_shot():
    X, y, _, _, text = make_embeddings(shots=3, dim=8)
    alphas, betas = (0.5, 2.0), (1.0, 6.0, 20.0)
    clf = TipAdapterClassifierCV(alphas=alphas, betas=betas, text_features=text)
    clf.fit(X, y)

    for index, params in enumerate(clf.cv_results_["params"]):
        correct = []
        for held_out in range(len(X)):
            keep = np.arange(len(X)) != held_out
            model = TipAdapterClassifier(text_features=text, **params)
            model.fit(X[keep], y[keep])
            correct.append(model.predict(X[[held_out]])[0] == y[held_out])
        assert clf.cv_results_["mean_test_score"][index] == pytest.approx(
            np.mean(correct), abs=1e-12
        )
    assert clf.n_splits_ == len(X)


def test_leave_one_out_works_with_one_shot_per_class():
    X, y, X_val, _, text = make_embeddings(shots=1)
    with pytest.warns(SingleShotWarning, match="single shot") as caught:
        clf = TipAdapterClassifierCV(text_features=text).fit(X, y)
    assert caught[0].filename == __file__

    assert clf.cache_keys_.shape == (4, 16)
    assert clf.predict(X_val).shape == (len(X_val),)


def test_kfold_equals_grid_search_cv():
    X, y, _, _, text = make_embeddings(shots=8)
    alphas, betas = (0.3, 1.0, 4.0), (2.0, 5.5, 9.0)
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    clf = TipAdapterClassifierCV(alphas=alphas, betas=betas, cv=cv, text_features=text)
    clf.fit(X, y)
    search = GridSearchCV(
        TipAdapterClassifier(text_features=text),
        {"beta": list(betas), "alpha": list(alphas)},
        cv=cv,
    ).fit(X, y)

    # ParameterGrid sorts the names, so GridSearchCV scans alpha outermost;
    # line its results up with ours (beta outer) by parameter pair.
    position = {
        (p["alpha"], p["beta"]): i for i, p in enumerate(search.cv_results_["params"])
    }
    order = [position[(p["alpha"], p["beta"])] for p in clf.cv_results_["params"]]
    np.testing.assert_allclose(
        clf.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"][order],
    )
    np.testing.assert_array_equal(
        clf.cv_results_["rank_test_score"],
        search.cv_results_["rank_test_score"][order],
    )
    # Both pick the best mean score; only tie-breaking order could differ.
    best = clf.cv_results_["mean_test_score"].max()
    assert search.best_score_ == pytest.approx(best)
    assert clf.best_score_ == pytest.approx(best)


def test_ties_go_to_the_first_pair_in_scan_order():
    X, y, X_val, y_val, _ = make_embeddings(noise=0.01)
    # Clusters this tight are classified perfectly at every candidate.
    clf = TipAdapterClassifierCV(alphas=(2.0, 1.0), betas=(3.0, 1.0)).fit(
        X, y, X_val=X_val, y_val=y_val
    )

    assert np.all(clf.cv_results_["mean_test_score"] == 1.0)
    assert (clf.beta_, clf.alpha_) == (3.0, 2.0)
    assert np.all(clf.cv_results_["rank_test_score"] == 1)


def test_prediction_uses_the_selected_pair_after_refitting_on_all_shots():
    X, y, X_val, y_val, text = make_embeddings()
    clf = TipAdapterClassifierCV(text_features=text, cv=3).fit(X, y)
    fixed = TipAdapterClassifier(
        alpha=clf.alpha_, beta=clf.beta_, text_features=text
    ).fit(X, y)

    np.testing.assert_array_equal(
        clf.decision_function(X_val), fixed.decision_function(X_val)
    )
    assert clf.n_splits_ == 3
    assert {"split0_test_score", "split2_test_score"} <= clf.cv_results_.keys()


@pytest.mark.parametrize("scoring", ["balanced_accuracy", "neg_log_loss"])
def test_other_scorings(scoring):
    X, y, X_val, y_val, text = make_embeddings()
    clf = TipAdapterClassifierCV(text_features=text, scoring=scoring)
    clf.fit(X, y, X_val=X_val, y_val=y_val)

    fixed = TipAdapterClassifier(
        alpha=clf.alpha_, beta=clf.beta_, text_features=text
    ).fit(X, y)
    if scoring == "neg_log_loss":
        proba = fixed.predict_proba(X_val)
        expected = np.mean(np.log(proba[np.arange(len(y_val)), y_val]))
        assert clf.best_score_ == pytest.approx(expected, rel=1e-4)
    else:
        from sklearn.metrics import balanced_accuracy_score

        expected = balanced_accuracy_score(y_val, fixed.predict(X_val))
        assert clf.best_score_ == pytest.approx(expected)


def test_finetune_selection_is_honest():
    X, y, X_val, y_val, text = make_embeddings(shots=8)
    params = dict(text_features=text, finetune=True, max_iter=3, random_state=0)

    with pytest.raises(ValueError, match="leave-one-out"):
        TipAdapterClassifierCV(**params).fit(X, y)

    folds = TipAdapterClassifierCV(cv=2, **params).fit(X, y)
    assert folds.finetuned_keys_.shape == X.shape
    validation = TipAdapterClassifierCV(**params).fit(X, y, X_val=X_val, y_val=y_val)
    assert validation.n_splits_ == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alphas": ()}, "alphas"),
        ({"betas": (1.0, np.nan)}, "betas"),
        ({"alphas": (-1.0,)}, "alphas"),
    ],
)
def test_bad_grids(kwargs, message):
    X, y, *_ = make_embeddings()
    with pytest.raises(ValueError, match=message):
        TipAdapterClassifierCV(**kwargs).fit(X, y)


def test_validation_labels_must_be_known():
    X, y, X_val, y_val, _ = make_embeddings()
    with pytest.raises(ValueError, match="y_val holds label"):
        TipAdapterClassifierCV().fit(X, y, X_val=X_val, y_val=y_val + 10)
    with pytest.raises(ValueError, match="together"):
        TipAdapterClassifierCV().fit(X, y, X_val=X_val)
