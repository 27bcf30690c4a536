"""Tip-Adapter-F: the fine-tuned keys against a plain torch loop of the
reference update rule, determinism, honesty of early stopping, persistence."""

import pickle

import numpy as np
import pytest
import torch

from sktip import CLIPFeaturizer, TipAdapterClassifier


def _normalized(array):
    return array / np.linalg.norm(array, axis=1, keepdims=True)


@pytest.fixture
def embeddings():
    """Three well separated classes of 12 shots each, plus queries."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16))
    y = np.repeat([0, 1, 2], 12)
    X = _normalized(centers[y] + 0.8 * rng.normal(size=(36, 16))).astype(np.float32)
    queries = _normalized(centers[y] + 0.8 * rng.normal(size=(36, 16)))
    text = _normalized(centers + 0.5 * rng.normal(size=(3, 16))).astype(np.float32)
    return X, y, queries.astype(np.float32), text


def reference_keys(X, y, text, alpha, beta, epochs, lr, eps, weight_decay):
    """The reference's training loop, written out plainly.

    One batch per epoch holds every sample, so shuffling cannot change the
    result; the cache values enter through a dense one-hot product, as in
    the reference.
    """
    features = torch.tensor(X)
    labels = torch.tensor(y)
    values = torch.nn.functional.one_hot(labels).float()
    adapter = torch.nn.Linear(X.shape[1], X.shape[0], bias=False)
    adapter.weight = torch.nn.Parameter(features.clone())
    optimizer = torch.optim.AdamW(
        adapter.parameters(), lr=lr, eps=eps, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for _ in range(epochs):
        affinity = adapter(features)
        cache_logits = ((-1) * (beta - beta * affinity)).exp() @ values
        clip_logits = 100.0 * features @ torch.tensor(text).T
        logits = clip_logits + cache_logits * alpha
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return adapter.weight.detach().numpy()


@pytest.mark.parametrize(
    "alpha, beta, epochs, lr",
    [(1.0, 5.5, 20, 1e-3), (3.0, 2.0, 7, 1e-2), (0.5, 10.0, 3, 5e-3)],
)
def test_matches_reference_loop(embeddings, alpha, beta, epochs, lr):
    X, y, queries, text = embeddings
    clf = TipAdapterClassifier(
        alpha=alpha,
        beta=beta,
        text_features=text,
        finetune=True,
        max_iter=epochs,
        learning_rate_init=lr,
        batch_size=len(X),
        random_state=0,
    ).fit(X, y)
    keys = reference_keys(X, y, text, alpha, beta, epochs, lr, 1e-4, 0.01)

    np.testing.assert_allclose(clf.finetuned_keys_, keys, rtol=0, atol=2e-5)
    expected = (
        100.0 * queries @ text.T
        + alpha * np.exp(-(beta - beta * queries @ keys.T)) @ np.eye(3)[y]
    )
    np.testing.assert_allclose(
        clf.decision_function(queries), expected, rtol=1e-4, atol=1e-3
    )


def test_training_free_cache_is_untouched(embeddings):
    X, y, _, text = embeddings
    plain = TipAdapterClassifier(text_features=text).fit(X, y)
    tuned = TipAdapterClassifier(
        text_features=text, finetune=True, learning_rate_init=1e-2, random_state=0
    ).fit(X, y)

    np.testing.assert_array_equal(tuned.cache_keys_, plain.cache_keys_)
    assert not np.allclose(tuned.finetuned_keys_, tuned.cache_keys_)
    assert len(tuned.loss_curve_) == tuned.n_iter_ == 20
    assert tuned.loss_curve_[-1] < tuned.loss_curve_[0]


def test_same_random_state_gives_identical_keys(embeddings):
    X, y, _, text = embeddings
    params = dict(text_features=text, finetune=True, batch_size=8, max_iter=5)
    first = TipAdapterClassifier(random_state=3, **params).fit(X, y)
    second = TipAdapterClassifier(random_state=3, **params).fit(X, y)
    other = TipAdapterClassifier(random_state=4, **params).fit(X, y)

    np.testing.assert_array_equal(first.finetuned_keys_, second.finetuned_keys_)
    # Mini-batches of 8 are shuffled differently under another seed.
    assert not np.array_equal(first.finetuned_keys_, other.finetuned_keys_)


def test_early_stopping_holds_out_shots(embeddings):
    X, y, _, text = embeddings
    clf = TipAdapterClassifier(
        text_features=text,
        finetune=True,
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=3,
        max_iter=30,
        random_state=0,
    ).fit(X, y)

    # 9 of 36 shots are held out, 3 per class, and left out of the cache.
    assert clf.finetuned_keys_.shape == (27, 16)
    np.testing.assert_array_equal(clf.finetuned_values_.sum(axis=0), [9, 9, 9])
    assert len(clf.validation_scores_) == clf.n_iter_ <= 30
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_early_stopping_needs_two_shots_per_class():
    X = np.eye(4)
    with pytest.raises(ValueError, match="two shots per class"):
        TipAdapterClassifier(finetune=True, early_stopping=True).fit(X, [0, 1, 2, 3])


def test_interrupted_finetuning_keeps_previous_fit(embeddings, monkeypatch):
    X, y, _, text = embeddings
    clf = TipAdapterClassifier(text_features=text, finetune=True, max_iter=2)
    clf.fit(X, y)
    before = {name: value for name, value in vars(clf).items()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sktip._classifier.finetune_keys", interrupt)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[::-1], y[::-1])

    assert vars(clf).keys() == before.keys()
    for name, value in before.items():
        assert vars(clf)[name] is value


def test_finetune_on_images_fits_support_set(tiny_model_name, digit_files):
    paths, labels = digit_files
    shots = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
    held_out = np.setdiff1d(np.arange(len(paths)), shots)
    featurizer = CLIPFeaturizer(tiny_model_name, device="cpu")
    X = [paths[i] for i in shots]
    # Random tiny-model features are nearly collinear (mean cosine ~0.99), so
    # a sharp beta is needed for the cache to tell shots apart at all.
    params = dict(beta=50.0, augment_views=0, random_state=0)

    plain = TipAdapterClassifier(featurizer, **params).fit(X, labels[shots])
    tuned = TipAdapterClassifier(featurizer, finetune=True, **params)
    tuned.fit(X, labels[shots])

    # Measured: 0.10 training-free against 0.46 fine-tuned.
    assert tuned.score(X, labels[shots]) > plain.score(X, labels[shots]) + 0.1
    predictions = tuned.predict([paths[i] for i in held_out])
    assert predictions.shape == (len(held_out),)
    assert set(predictions) <= set(range(10))


def test_finetuned_classifier_pickles(embeddings):
    X, y, queries, text = embeddings
    clf = TipAdapterClassifier(text_features=text, finetune=True, random_state=0)
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))

    np.testing.assert_array_equal(
        restored.decision_function(queries), clf.decision_function(queries)
    )
