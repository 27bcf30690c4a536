"""Each distinct image, and each augmented view, is encoded once per model,
however often a search fits and predicts; stale or corrupted entries are
never served."""

import os
import shutil
import time
import warnings

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from sktip import (
    CLIPFeaturizer,
    TipAdapterClassifier,
    TipAdapterClassifierCV,
    clear_embedding_cache,
)
from sktip.exceptions import EmbeddingCacheWarning, ImageLoadError


@pytest.fixture
def featurizer(tiny_model_name):
    clear_embedding_cache()
    yield CLIPFeaturizer(tiny_model_name, device="cpu", batch_size=16)
    clear_embedding_cache()


def pictures_encoded(featurizer):
    """Pictures the featurizer's model has encoded in this process so far."""
    return featurizer._loaded().pictures_encoded


@pytest.fixture
def shots(digit_files):
    paths, labels = digit_files
    chosen = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(5)])
    return [paths[i] for i in chosen], labels[chosen]


def test_grid_search_encodes_each_image_and_view_once(featurizer, shots):
    X, y = shots
    clf = TipAdapterClassifier(featurizer, augment_views=2, random_state=0)
    before = pictures_encoded(featurizer)
    search = GridSearchCV(clf, {"alpha": [0.5, 1.0], "beta": [1.0, 5.5]}, cv=2)
    search.fit(X, y)

    # 20 images: 2 augmented views each for the caches, and one plain view
    # each for the validation predictions; 4 candidates x 2 folds + refit
    # would encode 9 times as much without the cache.
    assert pictures_encoded(featurizer) - before == 20 * 2 + 20


def test_pipeline_search_encodes_each_image_once(featurizer, shots):
    X, y = shots
    pipeline = make_pipeline(featurizer, TipAdapterClassifier())
    before = pictures_encoded(featurizer)
    search = GridSearchCV(pipeline, {"tipadapterclassifier__beta": [1, 3, 9]}, cv=2)
    search.fit(X, y)
    cross_val_score(pipeline, X, y, cv=2)

    assert pictures_encoded(featurizer) - before == 20


def test_cv_estimator_encodes_each_image_once(featurizer, shots):
    X, y = shots
    before = pictures_encoded(featurizer)
    TipAdapterClassifierCV(featurizer, augment_views=3, random_state=0).fit(X, y)

    assert pictures_encoded(featurizer) - before == 20 * 3


def test_edited_image_is_encoded_again(featurizer, tmp_path, digit_files):
    path = tmp_path / "digit.png"
    shutil.copy(digit_files[0][0], path)
    first = featurizer.transform([path])
    Image.open(digit_files[0][1]).save(path)
    second = featurizer.transform([path])

    assert not np.allclose(first, second)
    np.testing.assert_array_equal(second, featurizer.transform([digit_files[0][1]]))


def test_retry_after_bad_file_encodes_only_the_rest(featurizer, tmp_path, shots):
    X, _ = shots
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    # The bad file comes after the first batch of 16 has been encoded.
    with_bad = X[:18] + [str(bad)] + X[18:]
    before = pictures_encoded(featurizer)
    with pytest.raises(ImageLoadError, match="index 18") as error:
        featurizer.transform(with_bad)
    assert error.value.index == 18
    done = pictures_encoded(featurizer) - before

    features = featurizer.transform(X)
    assert done == 16
    assert pictures_encoded(featurizer) - before == len(X)
    np.testing.assert_allclose(
        features,
        CLIPFeaturizer(**featurizer.get_params())
        .set_params(embedding_cache=None)
        .transform(X),
        atol=1e-6,
    )


def test_disk_cache_survives_the_process_and_rejects_bad_entries(
    featurizer, tmp_path, shots
):
    X, _ = shots
    on_disk = featurizer.set_params(embedding_cache=joblib.Memory(tmp_path))
    reference = on_disk.transform(X[:3])
    clear_embedding_cache()
    before = pictures_encoded(on_disk)
    np.testing.assert_array_equal(on_disk.transform(X[:3]), reference)
    assert pictures_encoded(on_disk) == before

    entries = sorted((tmp_path / "sktip-embeddings").rglob("*.npz"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:40])
    shutil.copy(entries[2], entries[1])
    with pytest.warns(EmbeddingCacheWarning) as caught:
        again = on_disk.transform(X[:3])
    assert len(caught) == 2, [str(w.message) for w in caught]
    np.testing.assert_allclose(again, reference, atol=1e-6)
    assert pictures_encoded(on_disk) == before + 2

    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddingCacheWarning)
        on_disk.transform(X[:3])


def test_changed_checkpoint_is_a_different_model(tmp_path, digit_files):
    from conftest import save_tiny_model

    folder = save_tiny_model(tmp_path / "model", seed=0)
    featurizer = CLIPFeaturizer(f"local-dir:{folder}", device="cpu")
    first = featurizer.transform(digit_files[0][:2])
    time.sleep(0.01)
    save_tiny_model(folder, seed=1)
    os.utime(folder / "open_clip_pytorch_model.bin")
    second = featurizer.transform(digit_files[0][:2])

    assert not np.allclose(first, second)


def test_random_weights_are_never_served_from_another_draw(
    tiny_model_name, digit_files
):
    import torch

    from sktip import clear_model_cache
    from sktip.exceptions import RandomWeightsWarning

    clear_embedding_cache()
    featurizer = CLIPFeaturizer(tiny_model_name, pretrained=None, device="cpu")
    features = []
    for seed in (0, 1):
        clear_model_cache()
        torch.manual_seed(seed)
        with pytest.warns(RandomWeightsWarning) as caught:
            features.append(featurizer.transform(digit_files[0][:2]))
        # The warning points at the user's line, not into sktip.
        assert caught[0].filename == __file__

    assert not np.allclose(features[0], features[1])
    clear_model_cache()
