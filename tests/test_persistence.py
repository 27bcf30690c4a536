"""Cloning, parameters and persistence of ``TipAdapterClassifier``."""

import io
import os
import pickle
import subprocess
import sys
import textwrap
from collections import OrderedDict

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from sktip import CLIPFeaturizer, TipAdapterClassifier, _models, clear_embedding_cache


def embedding_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8))
    y = np.array(["b", "c", "a"])[np.arange(30) % 3]
    return X, y, rng.normal(size=(3, 8)), rng.normal(size=(10, 8))


@pytest.fixture
def no_model_loading(monkeypatch):
    """An empty model registry in which any attempt to load weights fails."""

    def refuse(spec):
        raise AssertionError(f"a model was loaded: {spec}")

    monkeypatch.setattr(_models, "_registry", OrderedDict())
    monkeypatch.setattr(_models, "_load", refuse)
    return _models


@pytest.fixture
def fitted_clip_classifier(tiny_featurizer, digit_shots):
    train, y, _, _ = digit_shots
    clf = TipAdapterClassifier(tiny_featurizer, alpha=3.0, augment_views=2)
    return clf.set_params(random_state=0).fit(train, y)


class RecordingUnpickler(pickle.Unpickler):
    """Records the module of every class or function the pickle refers to."""

    def __init__(self, file):
        super().__init__(file)
        self.modules = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


# -- parameters and clone --------------------------------------------------


def test_get_params_set_params_round_trip():
    clf = TipAdapterClassifier(alpha=2.0, beta=3.0, templates="imagenet")
    params = clf.get_params()
    assert params["alpha"] == 2.0
    assert params["beta"] == 3.0
    assert params["templates"] == "imagenet"
    assert params["featurizer"] is None

    clf.set_params(alpha=0.5, augment_views=0, random_state=7)
    assert clf.alpha == 0.5
    assert clf.augment_views == 0
    assert clf.random_state == 7
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(gamma=1.0)


def test_clone_keeps_params_and_drops_fitted_state():
    X, y, W, _ = embedding_problem()
    clf = TipAdapterClassifier(alpha=2.0, text_features=W).fit(X, y)
    copy = clone(clf)
    assert copy.get_params()["alpha"] == 2.0
    np.testing.assert_array_equal(copy.text_features, W)
    assert not hasattr(copy, "classes_")
    assert not hasattr(copy, "cache_keys_")


def test_clone_and_params_of_a_featurizer_classifier_load_no_model(
    no_model_loading, tiny_model_name
):
    featurizer = CLIPFeaturizer(tiny_model_name, batch_size=8)
    clf = TipAdapterClassifier(featurizer, alpha=2.0, templates=["a {}."])

    params = clf.get_params(deep=True)
    assert params["featurizer__model_name"] == tiny_model_name
    assert params["featurizer__batch_size"] == 8
    copy = clone(clf)
    copy.set_params(featurizer__batch_size=4, alpha=0.5)
    repr(copy)
    pickle.loads(pickle.dumps(copy))

    assert copy.featurizer is not featurizer
    assert copy.featurizer.batch_size == 4
    assert featurizer.batch_size == 8
    assert copy.alpha == 0.5 and clf.alpha == 2.0
    assert len(no_model_loading._registry) == 0


# -- pickle and joblib -------------------------------------------------------


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_embeddings_classifier_round_trip(tmp_path, dump):
    X, y, W, test = embedding_problem()
    clf = TipAdapterClassifier(alpha=2.0, text_features=W).fit(X, y)
    path = tmp_path / "clf.bin"
    if dump == "pickle":
        path.write_bytes(pickle.dumps(clf))
        loaded = pickle.loads(path.read_bytes())
    else:
        joblib.dump(clf, path)
        loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(
        loaded.decision_function(test), clf.decision_function(test)
    )


def test_featurizer_classifier_pickles_without_weights(
    fitted_clip_classifier, digit_shots, monkeypatch
):
    _, _, test, _ = digit_shots
    expected = fitted_clip_classifier.decision_function(test)

    data = pickle.dumps(fitted_clip_classifier)
    # The cache (16 x 32 floats) and the parameters; the tiny model alone
    # would take 6.7 MB, a real CLIP hundreds of MB.
    assert len(data) < 100_000
    unpickler = RecordingUnpickler(io.BytesIO(data))
    loaded = unpickler.load()
    assert not any(
        module.split(".")[0] in {"torch", "open_clip", "torchvision"}
        for module in unpickler.modules
    ), unpickler.modules

    # In an empty registry, unpickling loads nothing and the first
    # prediction loads the model again from its folder.
    monkeypatch.setattr(_models, "_registry", OrderedDict())
    loaded = pickle.loads(data)
    assert len(_models._registry) == 0
    np.testing.assert_array_equal(loaded.decision_function(test), expected)
    assert len(_models._registry) == 1


def test_featurizer_classifier_joblib_round_trip(
    fitted_clip_classifier, digit_shots, tmp_path
):
    _, _, test, _ = digit_shots
    joblib.dump(fitted_clip_classifier, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    for name in ["classes_", "cache_keys_", "cache_values_", "text_features_"]:
        np.testing.assert_array_equal(
            getattr(loaded, name), getattr(fitted_clip_classifier, name)
        )
    np.testing.assert_array_equal(
        loaded.decision_function(test),
        fitted_clip_classifier.decision_function(test),
    )


def test_featurizer_classifier_predicts_the_same_in_a_fresh_process(
    fitted_clip_classifier, digit_shots, tmp_path
):
    _, _, test, _ = digit_shots
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(fitted_clip_classifier))
    np.save(tmp_path / "paths.npy", test)
    script = textwrap.dedent(
        """
        import pickle, sys
        from pathlib import Path

        import numpy as np
        import torch

        # The same thread count as the tests, so that torch sums in the same
        # order and the features match to the bit.
        torch.set_num_threads(1)
        folder = Path(sys.argv[1])
        clf = pickle.loads((folder / "clf.pkl").read_bytes())
        paths = np.load(folder / "paths.npy")
        np.save(folder / "scores.npy", clf.decision_function(paths))
        np.save(folder / "predictions.npy", clf.predict(paths))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    # Features cached from batches of other sizes differ in the last bit;
    # encode afresh, in the same batches as the new process did.
    clear_embedding_cache()
    np.testing.assert_array_equal(
        np.load(tmp_path / "scores.npy"),
        fitted_clip_classifier.decision_function(test),
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "predictions.npy"), fitted_clip_classifier.predict(test)
    )
