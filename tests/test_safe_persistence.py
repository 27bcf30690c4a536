"""``sktip.save`` and ``sktip.load``: the safetensors persistence format."""

import json
import pickle
import re
import shutil

import joblib
import numpy as np
import open_clip
import pytest
import safetensors
import safetensors.numpy
import torch
from conftest import TINY_CONFIG, save_tiny_model
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import sktip
from sktip import CLIPFeaturizer, TipAdapterClassifier, TipAdapterClassifierCV
from sktip._persistence import _checksum, _featurizer_identity

PREDICTIONS = ("predict", "predict_proba", "decision_function")


def embedding_problem(labels, n_features=8, seed=0):
    """Separable embeddings with ten samples of every label, interleaved; a
    text classifier; and queries."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)[np.arange(10 * len(labels)) % len(labels)]
    centres = rng.normal(size=(len(labels), n_features)) * 2
    X = rng.normal(size=(len(y), n_features)) + centres[np.arange(len(y)) % len(labels)]
    text = rng.normal(size=(len(labels), n_features))
    return X, y, text, rng.normal(size=(12, n_features))


ESTIMATORS = {
    "plain": lambda text: TipAdapterClassifier(alpha=2.0, text_features=text),
    "finetuned": lambda text: TipAdapterClassifier(
        finetune=True, max_iter=3, batch_size=8, random_state=0
    ),
    "early_stopping": lambda text: TipAdapterClassifier(
        text_features=text,
        finetune=True,
        early_stopping=True,
        validation_fraction=0.3,
        max_iter=3,
        random_state=0,
    ),
    "cv": lambda text: TipAdapterClassifierCV(
        alphas=(0.5, 1.0, 2.0), betas=np.array([1.0, 5.5]), text_features=text
    ),
    "cv_finetuned": lambda text: TipAdapterClassifierCV(
        alphas=(0.5, 1.0),
        betas=(1.0, 5.5),
        cv=3,
        finetune=True,
        max_iter=2,
        random_state=0,
    ),
}
LABELS = {"str": ["dog", "cat", "bird"], "int": [7, 3, 11]}


def assert_same_predictions(expected, actual, X):
    for method in PREDICTIONS:
        want, got = getattr(expected, method)(X), getattr(actual, method)(X)
        assert got.dtype == want.dtype, method
        np.testing.assert_array_equal(got, want, err_msg=method)


def round_trip(estimator, path, featurizer=None):
    sktip.save(estimator, path)
    return sktip.load(path, featurizer=featurizer)


def assert_same_params(expected, actual, ignore=("text_features",)):
    want, got = expected.get_params(deep=False), actual.get_params(deep=False)
    assert set(got) == set(want)
    for name in set(want) - set(ignore):
        assert type(got[name]) is type(want[name]), name
        if isinstance(want[name], np.ndarray):
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            assert got[name] == want[name], name


@pytest.fixture
def saved_embedding_model(tmp_path):
    """Path of a saved cache model with a text classifier, and its queries."""
    X, y, text, queries = embedding_problem(LABELS["str"])
    path = tmp_path / "model.safetensors"
    sktip.save(TipAdapterClassifier(text_features=text).fit(X, y), path)
    return path, queries


# -- round trips -------------------------------------------------------------


@pytest.mark.parametrize("labels", LABELS)
@pytest.mark.parametrize("kind", ESTIMATORS)
def test_round_trip_in_embeddings_mode_is_bit_identical(tmp_path, kind, labels):
    X, y, text, queries = embedding_problem(LABELS[labels])
    fitted = ESTIMATORS[kind](text).fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert type(loaded) is type(fitted)
    assert_same_params(fitted, loaded)
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.classes_.dtype == fitted.classes_.dtype
    assert_same_predictions(fitted, loaded, queries)
    assert_same_predictions(fitted, loaded, X)


@pytest.mark.parametrize("labels", ["str", "int"])
@pytest.mark.parametrize("kind", ["plain", "finetuned", "cv"])
def test_round_trip_with_clip_featurizer_is_bit_identical(
    tmp_path, tiny_model_name, digit_shots, kind, labels
):
    train, y, test, _ = digit_shots
    if labels == "str":
        names = np.array(["zero", "one", "two", "three", "four"] * 2)
        y = np.char.add(names[y], np.array([str(label) for label in y]))
        text_options = {"templates": ["a digit: {}.", "{} written by hand."]}
    else:
        text_options = {"class_names": {label: f"digit {label}" for label in range(10)}}
    options = {"augment_views": 2, "random_state": 0, **text_options}
    if kind == "plain":
        estimator = TipAdapterClassifier(alpha=3.0, **options)
    elif kind == "finetuned":
        estimator = TipAdapterClassifier(finetune=True, max_iter=2, **options)
    else:
        estimator = TipAdapterClassifierCV(
            alphas=(1.0, 3.0), betas=(1.0, 5.5), **options
        )
    featurizer = CLIPFeaturizer(tiny_model_name, batch_size=64)
    fitted = estimator.set_params(featurizer=featurizer).fit(train, y)

    loaded = round_trip(
        fitted,
        tmp_path / "model.safetensors",
        # Without the embedding cache, the queries are encoded anew.
        featurizer=CLIPFeaturizer(tiny_model_name, embedding_cache=None),
    )

    assert loaded.featurizer.embedding_cache is None
    assert_same_params(fitted, loaded, ignore=("featurizer", "text_features"))
    assert loaded.text_features is None
    assert_same_predictions(fitted, loaded, test[:30])


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(np.array([1.0, -2.0, 3.0]), id="float64"),
        pytest.param(np.array([1.0, -2.0, 3.0], dtype=np.float32), id="float32"),
        pytest.param(np.array([2, 4, 1], dtype=np.int32), id="int32"),
        pytest.param(np.array([200, 4, 1], dtype=np.uint8), id="uint8"),
        pytest.param(np.array([True, False]), id="bool"),
        pytest.param(np.array(["a", "b", "c"], dtype="<U12"), id="wide-str"),
        pytest.param(np.array(["é", "日本", "x y"], dtype=object), id="object-str"),
    ],
)
def test_labels_keep_their_values_and_dtype(tmp_path, labels):
    X, _, _, queries = embedding_problem(range(len(labels)))
    y = labels[np.arange(len(X)) % len(labels)]
    fitted = TipAdapterClassifier().fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert loaded.classes_.dtype == fitted.classes_.dtype
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    assert [type(label) for label in loaded.classes_] == [
        type(label) for label in fitted.classes_
    ]
    assert_same_predictions(fitted, loaded, queries)


def test_parameters_keep_their_types(tmp_path):
    X, y, text, queries = embedding_problem(LABELS["int"])
    fitted = TipAdapterClassifierCV(
        alphas=np.array([0.5, 1.0], dtype=np.float32),
        betas=(1.0, 5.5),
        alpha=np.float32(2.0),
        templates=("{}", "a {}"),
        text_features=dict(zip(LABELS["int"], text, strict=True)),
        random_state=np.int64(3),
    ).fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert type(loaded.alpha) is np.float32
    assert type(loaded.random_state) is np.int64
    assert loaded.templates == ("{}", "a {}")
    assert loaded.betas == (1.0, 5.5)
    assert loaded.alphas.dtype == np.float32
    np.testing.assert_array_equal(loaded.alphas, fitted.alphas)
    assert (loaded.alpha_, loaded.beta_) == (fitted.alpha_, fitted.beta_)
    assert_same_predictions(fitted, loaded, queries)


def test_text_features_parameter_comes_back_as_the_fitted_rows(tmp_path):
    X, y, text, queries = embedding_problem(LABELS["str"])
    fitted = TipAdapterClassifier(text_features=text).fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    np.testing.assert_array_equal(loaded.text_features, fitted.text_features_)
    refitted = clone(loaded).fit(X, y)
    np.testing.assert_allclose(
        refitted.predict_proba(queries), fitted.predict_proba(queries)
    )


def test_cache_only_model_round_trips(tmp_path):
    X, y, _, queries = embedding_problem(LABELS["int"])
    fitted = TipAdapterClassifier().fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert loaded.text_features_ is None
    assert loaded.text_features is None
    assert_same_predictions(fitted, loaded, queries)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_float32_embeddings_and_feature_names_round_trip(tmp_path):
    X, y, text, queries = embedding_problem(LABELS["str"])
    X, text, queries = (a.astype(np.float32) for a in (X, text, queries))
    fitted = TipAdapterClassifier(text_features=text).fit(X, y)
    # What validate_data sets for a DataFrame with string column names.
    fitted.feature_names_in_ = np.array([f"f{i}" for i in range(8)], dtype=object)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert loaded.cache_keys_.dtype == loaded.text_features_.dtype == np.float32
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, fitted.feature_names_in_)
    assert_same_predictions(fitted, loaded, queries)


def test_search_results_are_left_out(tmp_path):
    X, y, text, _ = embedding_problem(LABELS["str"])
    fitted = ESTIMATORS["cv"](text).fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    assert not hasattr(loaded, "cv_results_")
    for name in ("alpha_", "beta_", "best_score_", "best_index_", "n_splits_"):
        assert getattr(loaded, name) == getattr(fitted, name)


def test_loaded_estimator_owns_writable_arrays_and_can_be_refitted(tmp_path):
    X, y, text, queries = embedding_problem(LABELS["str"])
    fitted = ESTIMATORS["finetuned"](text).fit(X, y)
    loaded = round_trip(fitted, tmp_path / "model.safetensors")

    for name in (
        "cache_keys_",
        "cache_values_",
        "finetuned_keys_",
        "finetuned_values_",
    ):
        assert getattr(loaded, name).flags.writeable
    assert loaded.loss_curve_ == fitted.loss_curve_
    assert loaded.n_iter_ == fitted.n_iter_
    refitted = clone(loaded).fit(X, y)
    np.testing.assert_array_equal(refitted.predict(queries), fitted.predict(queries))


def test_file_is_plain_safetensors_with_a_manifest(saved_embedding_model):
    path, _ = saved_embedding_model
    with safetensors.safe_open(path, framework="np") as file:
        assert sorted(file.keys()) == ["cache_keys_", "cache_values_", "text_features_"]
        metadata = file.metadata()
    manifest = json.loads(metadata["manifest"])
    assert metadata["format"] == manifest["format"] == "sktip.tip-adapter"
    assert manifest["format_version"] == 1
    assert manifest["estimator"] == "TipAdapterClassifier"
    assert manifest["featurizer"] is None
    assert "featurizer" not in manifest["params"]
    assert len(metadata["sha256"]) == 64


def test_save_replaces_a_file_in_one_step(tmp_path):
    X, y, text, queries = embedding_problem(LABELS["str"])
    path = tmp_path / "model.safetensors"
    sktip.save(TipAdapterClassifier(alpha=1.0).fit(X, y), path)
    second = TipAdapterClassifier(alpha=4.0, text_features=text).fit(X, y)
    sktip.save(second, str(path))

    assert sorted(tmp_path.iterdir()) == [path]
    assert sktip.load(path).alpha == 4.0


def test_load_unpickles_nothing(saved_embedding_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load deserialised objects with code")

    for owner, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (joblib, "load"),
        (torch, "load"),
        (np, "load"),
    ]:
        monkeypatch.setattr(owner, name, refuse)
    path, queries = saved_embedding_model
    assert sktip.load(path).predict(queries).shape == (12,)


# -- what save refuses ---------------------------------------------------------


def test_save_of_unfitted_estimator_raises_not_fitted(tmp_path):
    for estimator in (TipAdapterClassifier(), TipAdapterClassifierCV()):
        with pytest.raises(NotFittedError):
            sktip.save(estimator, tmp_path / "model.safetensors")
    assert not list(tmp_path.iterdir())


def test_save_refuses_other_estimators(tmp_path):
    X, y, _, _ = embedding_problem(LABELS["int"])

    class Subclass(TipAdapterClassifier):
        pass

    for estimator in (LogisticRegression().fit(X, y), Subclass().fit(X, y)):
        with pytest.raises(TypeError, match="TipAdapterClassifier and"):
            sktip.save(estimator, tmp_path / "model.safetensors")


@pytest.mark.parametrize(
    "estimator, parameter",
    [
        (TipAdapterClassifier(random_state=np.random.RandomState(0)), "random_state"),
        (
            TipAdapterClassifierCV(alphas=(1.0,), betas=(1.0,), cv=StratifiedKFold(3)),
            "cv",
        ),
    ],
)
def test_save_refuses_parameters_json_cannot_hold(tmp_path, estimator, parameter):
    X, y, _, _ = embedding_problem(LABELS["int"])
    estimator.fit(X, y)
    with pytest.raises(TypeError, match=rf"Parameter {parameter}=.*set_params"):
        sktip.save(estimator, tmp_path / "model.safetensors")


def test_save_refuses_labels_of_other_types(tmp_path):
    X, _, _, _ = embedding_problem(LABELS["int"])
    days = np.array(["2024-01-01", "2024-06-01", "2025-01-01"], dtype="datetime64[D]")
    y = days[np.arange(len(X)) % 3]
    estimator = TipAdapterClassifier().fit(X, y)
    with pytest.raises(TypeError, match="classes_ holds labels of type"):
        sktip.save(estimator, tmp_path / "model.safetensors")


def test_save_refuses_inconsistent_fitted_attributes(tmp_path):
    X, y, _, _ = embedding_problem(LABELS["int"])
    estimator = TipAdapterClassifier().fit(X, y)
    estimator.set_params(finetune=True)
    with pytest.raises(ValueError, match="fine-tuned model without"):
        sktip.save(estimator, tmp_path / "model.safetensors")


# -- what load refuses ---------------------------------------------------------


def path_pattern(path):
    return re.escape(repr(str(path)))


@pytest.mark.parametrize("keep", [0, 7, 8, 40, 0.5, -1])
def test_truncated_file_is_refused(saved_embedding_model, keep):
    path, _ = saved_embedding_model
    data = path.read_bytes()
    keep = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match=path_pattern(path)):
        sktip.load(path)


def test_every_flipped_bit_is_refused(saved_embedding_model):
    path, _ = saved_embedding_model
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    # Every byte of the header, and a sample of the tensor bytes.
    positions = [*range(header_end), *range(header_end, len(data), 13), len(data) - 1]
    accepted = []
    for position in positions:
        corrupted = bytearray(data)
        corrupted[position] ^= 1 << (position % 8)
        path.write_bytes(corrupted)
        try:
            sktip.load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
        else:
            accepted.append(position)
    assert accepted == []


@pytest.mark.parametrize("kind", ["empty", "text", "pickle", "other_safetensors"])
def test_files_not_written_by_sktip_are_refused(tmp_path, kind):
    path = tmp_path / "model.safetensors"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("{'alpha': 1.0}\n" * 10)
    elif kind == "pickle":
        X, y, _, _ = embedding_problem(LABELS["int"])
        path.write_bytes(pickle.dumps(TipAdapterClassifier().fit(X, y)))
    else:
        safetensors.numpy.save_file(
            {"weight": np.ones((2, 2), np.float32)}, path, metadata={"format": "pt"}
        )
    with pytest.raises(ValueError, match=path_pattern(path)):
        sktip.load(path)


def rewrite(path, edit_manifest=None, edit_tensors=None, fix_checksum=False):
    """Rewrite a saved file with an edited manifest or edited tensors."""
    with safetensors.safe_open(path, framework="np") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    manifest = json.loads(metadata["manifest"])
    if edit_manifest is not None:
        edit_manifest(manifest)
    if edit_tensors is not None:
        edit_tensors(tensors)
    metadata["manifest"] = json.dumps(manifest)
    if fix_checksum:
        metadata["sha256"] = _checksum(metadata["manifest"], tensors)
    safetensors.numpy.save_file(tensors, path, metadata=metadata)


def test_edited_manifest_fails_the_checksum(saved_embedding_model):
    path, _ = saved_embedding_model
    rewrite(path, edit_manifest=lambda manifest: manifest["params"].update(alpha=9.0))
    with pytest.raises(ValueError, match=path_pattern(path) + ".*checksum"):
        sktip.load(path)


def test_edited_tensor_fails_the_checksum(saved_embedding_model):
    path, _ = saved_embedding_model

    def scale_keys(tensors):
        tensors["cache_keys_"] = tensors["cache_keys_"] * 0.5

    rewrite(path, edit_tensors=scale_keys)
    with pytest.raises(ValueError, match="checksum"):
        sktip.load(path)


def test_newer_format_version_is_refused(saved_embedding_model):
    path, _ = saved_embedding_model
    rewrite(
        path,
        edit_manifest=lambda manifest: manifest.update(format_version=2),
        fix_checksum=True,
    )
    with pytest.raises(ValueError, match="format version 2.*upgrade sktip"):
        sktip.load(path)


def drop_one_hot(tensors):
    tensors["cache_values_"] = tensors["cache_values_"] * 2


def drop_text_column(tensors):
    tensors["text_features_"] = np.ascontiguousarray(tensors["text_features_"][:, 1:])


def add_tensor(tensors):
    tensors["__init__"] = np.zeros(1, np.float32)


@pytest.mark.parametrize(
    "edit_manifest, edit_tensors, message",
    [
        (lambda m: m.update(estimator="os.system"), None, "unknown estimator"),
        (lambda m: m["params"].update(alpha=-1.0), None, "alpha"),
        (lambda m: m["params"].update(gamma=1.0), None, "unknown parameters"),
        (lambda m: m["attributes"].update(n_features_in_=3), None, "n_features_in_"),
        (lambda m: m["attributes"].update(weights_=1), None, "unknown fitted"),
        (lambda m: m["classes"].update(dtype="|V8"), None, "dtype"),
        (lambda m: m["classes"]["__ndarray__"].pop(), None, "shape"),
        (lambda m: m.update(params={"__mapping__": 1}), None, ""),
        (None, drop_one_hot, "one-hot"),
        (None, drop_text_column, "text_features_"),
        (None, add_tensor, "unexpected tensors"),
    ],
)
def test_consistent_checksum_does_not_bypass_the_checks(
    saved_embedding_model, edit_manifest, edit_tensors, message
):
    path, _ = saved_embedding_model
    rewrite(path, edit_manifest, edit_tensors, fix_checksum=True)
    with pytest.raises(ValueError, match=path_pattern(path) + ".*" + message):
        sktip.load(path)


# -- featurizers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_model_file(tmp_path_factory, tiny_model_name, digit_shots):
    """A model fitted with the tiny CLIP featurizer, saved; and test images."""
    train, y, test, _ = digit_shots
    featurizer = CLIPFeaturizer(tiny_model_name, batch_size=64)
    estimator = TipAdapterClassifier(featurizer, augment_views=0).fit(train, y)
    path = tmp_path_factory.mktemp("saved") / "clip.safetensors"
    sktip.save(estimator, path)
    return path, estimator, test[:20]


def test_featurizer_must_be_passed_for_a_model_saved_with_one(clip_model_file):
    path, _, _ = clip_model_file
    with pytest.raises(ValueError, match="CLIPFeaturizer on 'local-dir:'.*featurizer="):
        sktip.load(path)


def test_featurizer_is_refused_for_a_model_saved_without_one(
    saved_embedding_model, tiny_model_name
):
    path, _ = saved_embedding_model
    with pytest.raises(ValueError, match="fitted on embeddings"):
        sktip.load(path, featurizer=CLIPFeaturizer(tiny_model_name))


def test_featurizer_on_other_weights_is_refused(clip_model_file, tmp_path):
    path, _, _ = clip_model_file
    other = save_tiny_model(tmp_path / "other", seed=1)
    featurizer = CLIPFeaturizer(f"local-dir:{other}")
    expected = (
        r"does not match.*weights_sha256\['open_clip_pytorch_model.bin'\]: "
        r"saved '[0-9a-f]{64}', given '[0-9a-f]{64}'"
    )
    with pytest.raises(ValueError, match=expected):
        sktip.load(path, featurizer=featurizer)


def test_featurizer_with_other_precision_is_refused(clip_model_file, tiny_model_name):
    path, _, _ = clip_model_file
    featurizer = CLIPFeaturizer(tiny_model_name, precision="fp32")
    with pytest.raises(ValueError, match="precision: saved 'auto', given 'fp32'"):
        sktip.load(path, featurizer=featurizer)


def test_local_dir_identity_depends_on_contents_not_path(
    clip_model_file, tiny_model_dir, tmp_path
):
    path, estimator, test = clip_model_file
    copy = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere")
    featurizer = CLIPFeaturizer(f"local-dir:{copy}", batch_size=64)

    identity = _featurizer_identity(featurizer)
    assert identity == _featurizer_identity(estimator.featurizer)
    assert str(tmp_path) not in json.dumps(identity)
    assert str(tiny_model_dir) not in json.dumps(identity)
    loaded = sktip.load(path, featurizer=featurizer)
    assert_same_predictions(estimator, loaded, test)


def test_checkpoint_file_identity_depends_on_contents_not_path(
    tiny_model_dir, tmp_path, monkeypatch
):
    # A built-in-style architecture name, so that pretrained can be a file.
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "sktip-tiny", TINY_CONFIG)
    checkpoint = tiny_model_dir / "open_clip_pytorch_model.bin"
    moved = shutil.copy(checkpoint, tmp_path / "renamed.bin")

    identity = _featurizer_identity(CLIPFeaturizer("sktip-tiny", pretrained=checkpoint))
    assert identity == _featurizer_identity(
        CLIPFeaturizer("sktip-tiny", pretrained=moved)
    )
    assert identity["pretrained"] == "file"
    assert str(tmp_path) not in json.dumps(identity)

    other = save_tiny_model(tmp_path / "other", seed=1)
    changed = CLIPFeaturizer(
        "sktip-tiny", pretrained=other / "open_clip_pytorch_model.bin"
    )
    assert _featurizer_identity(changed) != identity


class ProjectionFeaturizer(BaseEstimator, TransformerMixin):
    """A user featurizer: a fixed random projection of the inputs."""

    def __init__(self, seed=0, n_components=6):
        self.seed = seed
        self.n_components = n_components

    def fit(self, X=None, y=None):
        return self

    def transform(self, X):
        rng = np.random.default_rng(self.seed)
        X = np.asarray(X, dtype=np.float64)
        projection = rng.normal(size=(X.shape[1], self.n_components))
        features = X @ projection
        return features / np.linalg.norm(features, axis=1, keepdims=True)


class PlainFeaturizer:
    """A user featurizer without ``get_params``."""

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        return X / np.linalg.norm(X, axis=1, keepdims=True)


class OtherPlainFeaturizer(PlainFeaturizer):
    pass


def test_user_featurizer_is_identified_by_class_and_params(tmp_path):
    X, y, _, queries = embedding_problem(LABELS["str"])
    fitted = TipAdapterClassifier(ProjectionFeaturizer(seed=4), augment_views=0)
    fitted.fit(X, y)
    path = tmp_path / "model.safetensors"
    sktip.save(fitted, path)

    loaded = sktip.load(path, featurizer=ProjectionFeaturizer(seed=4))
    assert_same_predictions(fitted, loaded, queries)
    with pytest.raises(ValueError, match=r"params\['seed'\]: saved 4, given 5"):
        sktip.load(path, featurizer=ProjectionFeaturizer(seed=5))
    with pytest.raises(ValueError, match="class: saved 'ProjectionFeaturizer'"):
        sktip.load(path, featurizer=PlainFeaturizer())
    with pytest.raises(ValueError, match="a ProjectionFeaturizer featurizer"):
        sktip.load(path)


def test_clip_featurizer_against_another_featurizer_names_the_kind(
    clip_model_file,
):
    path, _, _ = clip_model_file
    expected = "class: saved nothing, given 'PlainFeaturizer'; kind: saved 'clip'"
    with pytest.raises(ValueError, match=expected) as error:
        sktip.load(path, featurizer=PlainFeaturizer())
    assert "embed_dim" not in str(error.value)


def test_featurizer_without_get_params_is_identified_by_class(tmp_path):
    X, y, _, queries = embedding_problem(LABELS["int"])
    fitted = TipAdapterClassifier(PlainFeaturizer(), augment_views=0).fit(X, y)
    path = tmp_path / "model.safetensors"
    sktip.save(fitted, path)

    assert_same_predictions(fitted, sktip.load(path, PlainFeaturizer()), queries)
    with pytest.raises(ValueError, match="class: saved 'PlainFeaturizer', given"):
        sktip.load(path, featurizer=OtherPlainFeaturizer())


def test_random_weights_of_another_draw_are_refused(tmp_path, digit_files):
    import torch

    from sktip import clear_model_cache
    from sktip.exceptions import RandomWeightsWarning
    from sktip.testing import save_tiny_clip

    name = save_tiny_clip(tmp_path / "model")
    featurizer = CLIPFeaturizer(name, pretrained=None, embedding_cache=None)
    paths, labels = digit_files
    with pytest.warns(RandomWeightsWarning):
        torch.manual_seed(0)
        clf = TipAdapterClassifier(featurizer, augment_views=0).fit(
            paths[:20], labels[:20]
        )
        sktip.save(clf, tmp_path / "clf.safetensors")
        clear_model_cache()
        torch.manual_seed(1)
        with pytest.raises(ValueError, match="weights_sha256"):
            sktip.load(tmp_path / "clf.safetensors", featurizer=featurizer)
    clear_model_cache()
