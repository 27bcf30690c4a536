"""sktip on a real Dask cluster: two worker processes, the tiny model, real
image files.

Predictions come back in input order and equal the local ones, each worker
process loads the model once, an unreadable file is named in the error the
client sees, finished blocks survive it, and scikit-learn's searches give
the local result under joblib's Dask backend.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402

from sktip import (  # noqa: E402
    CLIPFeaturizer,
    TipAdapterClassifier,
    TipAdapterClassifierCV,
)
from sktip.dask import map_images  # noqa: E402
from sktip.exceptions import ImageLoadError  # noqa: E402

BLOCK = 40


def _worker_state():
    """Runs on a worker: its torch threads and the models it has loaded."""
    import torch

    from sktip import _models

    return {
        "threads": torch.get_num_threads(),
        "offline": os.environ.get("HF_HUB_OFFLINE"),
        "models": [
            (loaded.spec.model_name, id(loaded), loaded.pictures_encoded)
            for loaded in _models._registry.values()
        ],
    }


def _set_torch_threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client():
    # Worker processes inherit this environment: no model hub is reachable.
    # Nannies also write their workers' variables into it; restore it after.
    environ = dict(os.environ)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with (
            # Dask's default MALLOC_TRIM_THRESHOLD_ slows image decoding down
            # (see docs/scaling.rst).
            dask.config.set(
                {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
            ),
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.run(_set_torch_threads)
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environ)


def _encoded_on_workers(client):
    """Pictures encoded so far by each worker's models, summed over workers."""
    return sum(
        count
        for state in client.run(_worker_state).values()
        for _, _, count in state["models"]
    )


@pytest.fixture(scope="module")
def fitted(tiny_model_name, digit_shots):
    """A classifier fitted in this process, and the paths to predict."""
    X_train, y_train, X_test, _ = digit_shots
    featurizer = CLIPFeaturizer(
        tiny_model_name, device="cpu", batch_size=16, embedding_cache=None
    )
    clf = TipAdapterClassifier(featurizer, augment_views=2, random_state=0)
    return clf.fit(X_train, y_train), np.asarray(X_test)


def test_workers_are_set_up(client):
    states = client.run(_worker_state)
    assert len(states) == 2
    for state in states.values():
        assert state["threads"] == 1
        assert state["offline"] == "1"


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_results_equal_local_ones_in_order(client, fitted, method):
    clf, paths = fitted
    estimator = clf.featurizer if method == "transform" else clf
    images = da.from_array(paths, chunks=BLOCK)

    result = map_images(estimator, images, method)
    assert result.chunks[0] == images.chunks[0]
    computed = result.compute()

    expected = getattr(estimator, method)(paths)
    assert computed.shape == result.shape == expected.shape
    if method == "predict":
        np.testing.assert_array_equal(computed, expected)
    else:
        # Blocks of 40 queries round differently from one block of all.
        np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-5)


def test_plain_map_blocks_route(client, fitted):
    """The route the docs give for users who do not want sktip.dask."""
    clf, paths = fitted
    images = da.from_array(paths, chunks=BLOCK)
    model = dask.delayed(clf)
    labels = images.map_blocks(
        lambda block, model: model.predict(block),
        model,
        meta=np.array((), dtype=clf.classes_.dtype),
    )
    n_classes = len(clf.classes_)
    proba = images.map_blocks(
        lambda block, model: model.predict_proba(block),
        model,
        new_axis=1,
        chunks=(images.chunks[0], (n_classes,)),
        meta=np.empty((0, 0), dtype=np.float32),
    )
    labels, proba = dask.compute(labels, proba)
    np.testing.assert_array_equal(labels, clf.predict(paths))
    np.testing.assert_allclose(proba, clf.predict_proba(paths), atol=1e-5)


def test_each_worker_loads_the_model_once(client, fitted):
    clf, paths = fitted
    images = da.from_array(paths, chunks=BLOCK)
    map_images(clf, images).compute()
    first = client.run(_worker_state)
    before = _encoded_on_workers(client)

    map_images(clf, images).compute()
    second = client.run(_worker_state)

    # One model per worker process, the same object as in the first run,
    # whose counter saw every image of the second: nothing was reloaded.
    for address, state in second.items():
        assert len(state["models"]) == 1
        assert state["models"][0][:2] == first[address]["models"][0][:2]
    assert _encoded_on_workers(client) - before == len(paths)


@pytest.fixture
def paths_with_bad_file(fitted, tmp_path):
    """The test paths with one corrupted PNG at position 130 (block 3)."""
    _, paths = fitted
    bad = tmp_path / "corrupted.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    paths = paths.astype(object)
    paths[130] = str(bad)
    return paths, str(bad)


def test_bad_file_is_named_with_its_global_position(
    client, fitted, paths_with_bad_file
):
    clf, _ = fitted
    paths, bad = paths_with_bad_file
    images = da.from_array(paths, chunks=BLOCK)
    with pytest.raises(ImageLoadError, match="corrupted.png") as raised:
        map_images(clf, images).compute()
    assert raised.value.index == 130
    assert raised.value.source == bad
    message = str(raised.value)
    assert message.startswith("image at index 130 ")
    assert message.endswith("[index 10 of block 3]")


def test_bad_file_with_unknown_chunk_sizes(client, fitted, paths_with_bad_file):
    clf, _ = fitted
    paths, bad = paths_with_bad_file
    images = da.from_array(paths, chunks=BLOCK)
    images = images[da.ones(len(paths), dtype=bool, chunks=BLOCK)]
    assert np.isnan(images.shape[0])
    with pytest.raises(ImageLoadError, match="corrupted.png") as raised:
        map_images(clf, images).compute()
    # The block's start is unknown: the index is the one within the block.
    assert raised.value.index == 10
    assert str(raised.value).endswith("[index 10 of block 3]")


def test_bad_file_through_plain_dask_names_the_file(
    client, fitted, paths_with_bad_file
):
    clf, _ = fitted
    paths, bad = paths_with_bad_file
    images = da.from_array(paths, chunks=BLOCK)
    labels = images.map_blocks(clf.predict, meta=np.array((), dtype=clf.classes_.dtype))
    with pytest.raises(ImageLoadError, match="corrupted.png") as raised:
        labels.compute()
    # Without sktip.dask the index is the position within the block.
    assert raised.value.index == 10
    assert raised.value.source == bad


def test_resume_after_bad_file(client, fitted, paths_with_bad_file, tmp_path):
    clf, _ = fitted
    paths, _ = paths_with_bad_file
    cache = tmp_path / "embeddings"
    on_disk = clf.set_params(featurizer__embedding_cache=str(cache))
    try:
        result = map_images(on_disk, paths, chunk_size=BLOCK)
        blocks = client.compute(list(result.to_delayed()))
        distributed.wait(blocks)

        # Every block but the one with the bad file finished, and its
        # results can be collected.
        statuses = [block.status for block in blocks]
        assert statuses.count("error") == 1 and statuses[3] == "error"
        assert isinstance(blocks[3].exception(), ImageLoadError)
        finished = client.gather([blocks[i] for i in range(len(blocks)) if i != 3])
        expected = on_disk.predict(list(np.delete(paths, range(120, 160))))
        np.testing.assert_array_equal(np.concatenate(finished), expected)

        # The workers saved every embedding they computed; a rerun without
        # the bad file encodes only what is missing.
        cached = len(list(Path(cache).rglob("*.npz")))
        before = _encoded_on_workers(client)
        good = np.delete(paths, 130)
        labels = map_images(on_disk, good, chunk_size=BLOCK).compute()
        assert _encoded_on_workers(client) - before == len(good) - cached
        np.testing.assert_array_equal(labels, on_disk.predict(list(good)))
    finally:
        clf.set_params(featurizer__embedding_cache=None)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(digit_files):
    paths, labels = digit_files
    chosen = np.concatenate([np.flatnonzero(labels == c)[:6] for c in range(5)])
    return [paths[i] for i in chosen], labels[chosen]


def test_grid_search_under_dask_backend_equals_local(client, tiny_model_name, shots):
    X, y = shots
    featurizer = CLIPFeaturizer(tiny_model_name, device="cpu", batch_size=16)
    clf = TipAdapterClassifier(featurizer, augment_views=2, random_state=0)
    grid = {"alpha": [0.5, 2.0], "beta": [1.0, 5.5]}

    local = GridSearchCV(clf, grid, cv=3).fit(X, y)
    before = _encoded_on_workers(client)
    with joblib.parallel_backend("dask"):
        remote = GridSearchCV(clf, grid, cv=3, n_jobs=-1).fit(X, y)

    assert _encoded_on_workers(client) > before  # the folds ran on the workers
    for key in ("mean_test_score", "rank_test_score", "params"):
        assert list(remote.cv_results_[key]) == list(local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


def test_classifier_cv_under_dask_backend_equals_local(client, tiny_model_name, shots):
    X, y = shots
    featurizer = CLIPFeaturizer(tiny_model_name, device="cpu", batch_size=16)
    clf = TipAdapterClassifierCV(
        featurizer, alphas=(0.5, 1.0, 2.0), betas=(1.0, 5.5), cv=3, augment_views=2
    )
    clf.set_params(random_state=0)

    local = clf.fit(X, y)
    local_results = {k: np.copy(v) for k, v in local.cv_results_.items()}
    local_pair = (local.alpha_, local.beta_)
    local_scores = cross_val_score(clf, X, y, cv=3)
    with joblib.parallel_backend("dask"):
        remote = clone(clf).fit(X, y)
        remote_scores = cross_val_score(clf, X, y, cv=3, n_jobs=-1)

    assert (remote.alpha_, remote.beta_) == local_pair
    np.testing.assert_array_equal(
        remote.cv_results_["mean_test_score"], local_results["mean_test_score"]
    )
    np.testing.assert_array_equal(remote_scores, local_scores)
