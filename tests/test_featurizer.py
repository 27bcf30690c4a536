"""CLIPFeaturizer on a tiny random open_clip model and real image files."""

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from sktip import CLIPFeaturizer, _models, clear_model_cache
from sktip.exceptions import (
    ImageLoadError,
    PretrainedWeightsError,
    RandomWeightsWarning,
)

EMBED_DIM = 32
ATOL = 1e-5


def _featurizer(model_name, **params):
    """A featurizer that computes every embedding it returns.

    The embedding cache would answer a repeated image from memory and hide
    what the encoder computes, which is what these tests are about.
    """
    params.setdefault("embedding_cache", None)
    return CLIPFeaturizer(model_name, **params)


@pytest.fixture
def paths(digit_files):
    return digit_files[0][:12]


@pytest.fixture
def mixed(paths):
    """The same kinds of input a user mixes: str, Path, PIL image, array."""
    with Image.open(paths[3]) as image:
        array = np.asarray(image.convert("RGB"))
    # Left open and undecoded, the way Image.open hands a picture over.
    with Image.open(paths[2]) as image:
        yield [paths[0], Path(paths[1]), image, array, paths[4]]


def _unit_rows(features):
    np.testing.assert_allclose(np.linalg.norm(features, axis=-1), 1.0, atol=ATOL)


def test_transform_mixed_inputs(tiny_model_name, mixed):
    features = _featurizer(tiny_model_name).transform(mixed)

    assert features.dtype == np.float32
    assert features.shape == (len(mixed), EMBED_DIM)
    _unit_rows(features)
    # Five different digits: a broken pipeline that encodes one picture, or
    # none, would give equal rows.
    assert np.linalg.matrix_rank(features) == len(mixed)


def test_input_kinds_of_one_picture_agree(tiny_model_name, digit_files):
    png = next(path for path in digit_files[0] if path.endswith(".png"))
    with Image.open(png) as image:
        kinds = [png, Path(png), image.copy(), np.asarray(image)]

    features = _featurizer(tiny_model_name).transform(kinds)

    np.testing.assert_allclose(features, features[[0, 0, 0, 0]], atol=ATOL)


def test_stack_of_arrays_is_a_sequence_of_images(tiny_model_name, digits):
    images = digits[0][:5]

    featurizer = _featurizer(tiny_model_name)

    np.testing.assert_allclose(
        featurizer.transform(images), featurizer.transform(list(images)), atol=ATOL
    )


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_rows_are_independent_of_the_batch(tiny_model_name, mixed, batch_size):
    featurizer = _featurizer(tiny_model_name, batch_size=batch_size)

    together = featurizer.transform(mixed)
    one_by_one = np.concatenate([featurizer.transform([item]) for item in mixed])

    np.testing.assert_allclose(together, one_by_one, atol=ATOL)
    reference = _featurizer(tiny_model_name, batch_size=32).transform(mixed)
    np.testing.assert_allclose(together, reference, atol=ATOL)


def test_loader_workers_give_the_same_features(tiny_model_name, paths):
    serial = _featurizer(tiny_model_name, batch_size=4)
    parallel = _featurizer(tiny_model_name, batch_size=4, num_workers=2)

    np.testing.assert_allclose(
        parallel.transform(paths), serial.transform(paths), atol=ATOL
    )
    # Views are seeded per image, so worker processes draw the same crops.
    np.testing.assert_allclose(
        parallel.encode_views(paths[:6], n_views=3, random_state=0),
        serial.encode_views(paths[:6], n_views=3, random_state=0),
        atol=ATOL,
    )


@pytest.mark.parametrize("shape", [(1, 1), (1, 4000), (4000, 1), (7, 3, 4)])
def test_tiny_and_extreme_aspect_images_encode(tiny_model_name, shape):
    # The crop sampler falls back to a central crop when no random box fits,
    # and resizing must cope with a single pixel.
    image = np.full(shape, 200, dtype=np.uint8)
    featurizer = _featurizer(tiny_model_name)

    features = featurizer.transform([image])
    views = featurizer.encode_views([image], n_views=3, random_state=0)

    assert np.isfinite(features).all()
    assert np.isfinite(views).all()
    assert views.shape == (1, 3, EMBED_DIM)


def test_empty_input(tiny_model_name):
    featurizer = _featurizer(tiny_model_name)

    assert featurizer.transform([]).shape == (0, EMBED_DIM)
    assert featurizer.encode_views([], n_views=2).shape == (0, 2, EMBED_DIM)


def test_single_path_is_refused(tiny_model_name, paths):
    with pytest.raises(TypeError, match="wrap a single path in a list"):
        _featurizer(tiny_model_name).transform(paths[0])


def test_encode_text(tiny_model_name):
    prompts = ["a photo of a zero.", "a photo of a one.", "a photo of a seven."]

    features = _featurizer(tiny_model_name).encode_text(prompts)

    assert features.dtype == np.float32
    assert features.shape == (3, EMBED_DIM)
    _unit_rows(features)
    assert np.linalg.matrix_rank(features) == 3


@pytest.mark.parametrize(
    "texts, message",
    [("a photo of a cat", "not one string"), (["a cat", 3], "index 1")],
)
def test_encode_text_refuses_non_strings(tiny_model_name, texts, message):
    with pytest.raises(TypeError, match=message):
        _featurizer(tiny_model_name).encode_text(texts)


def test_encode_views_are_raw_augmented_views(tiny_model_name, paths):
    views = _featurizer(tiny_model_name).encode_views(
        paths[:4], n_views=5, random_state=0
    )

    assert views.dtype == np.float32
    assert views.shape == (4, 5, EMBED_DIM)
    # Not normalised: the caller averages raw views, then normalises.
    norms = np.linalg.norm(views, axis=-1)
    assert np.abs(norms - 1).max() > 0.1
    # Each view is its own crop and flip.
    for image_views in views:
        assert not np.allclose(image_views[0], image_views[1:], atol=1e-3)


def test_encode_views_is_reproducible(tiny_model_name, paths):
    featurizer = _featurizer(tiny_model_name)

    first = featurizer.encode_views(paths[:4], n_views=3, random_state=42)
    again = featurizer.encode_views(paths[:4], n_views=3, random_state=42)
    from_generator = featurizer.encode_views(
        paths[:4], n_views=3, random_state=np.random.RandomState(42)
    )
    other_seed = featurizer.encode_views(paths[:4], n_views=3, random_state=43)

    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(from_generator, first, atol=ATOL)
    assert not np.allclose(other_seed, first, atol=1e-3)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_encode_views_ignore_position_and_batch(tiny_model_name, mixed, batch_size):
    reference = _featurizer(tiny_model_name, batch_size=32).encode_views(
        mixed, n_views=4, random_state=3
    )
    featurizer = _featurizer(tiny_model_name, batch_size=batch_size)

    reversed_order = featurizer.encode_views(mixed[::-1], n_views=4, random_state=3)
    alone = featurizer.encode_views([mixed[2]], n_views=4, random_state=3)

    np.testing.assert_allclose(reversed_order[::-1], reference, atol=ATOL)
    np.testing.assert_allclose(alone[0], reference[2], atol=ATOL)


@pytest.mark.parametrize("n_views", [0, -1, 2.5, "3"])
def test_encode_views_refuses_bad_n_views(tiny_model_name, paths, n_views):
    with pytest.raises(ValueError, match="n_views"):
        _featurizer(tiny_model_name).encode_views(paths[:1], n_views=n_views)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Make any attempt to load (or fetch a loaded) model fail the test."""

    def refuse(spec):
        raise AssertionError(f"a model was loaded: {spec}")

    monkeypatch.setattr(_models, "get_model", refuse)
    monkeypatch.setattr(_models, "_load", refuse)


def test_estimator_api_does_not_load_a_model(tiny_model_name, no_model_loading):
    featurizer = CLIPFeaturizer(tiny_model_name, batch_size=8)

    params = featurizer.get_params()
    twin = clone(featurizer)
    twin.set_params(batch_size=4)
    restored = pickle.loads(pickle.dumps(featurizer))
    names = featurizer.fit(["ignored.png"]).get_feature_names_out()
    repr(featurizer)

    assert params["model_name"] == tiny_model_name
    assert twin.get_params()["batch_size"] == 4
    assert featurizer.batch_size == 8
    assert restored.get_params() == params
    assert featurizer.embed_dim == EMBED_DIM
    assert list(names) == [f"clipfeaturizer{i}" for i in range(EMBED_DIM)]


def test_feature_names_of_a_registered_model_need_no_weights(no_model_loading):
    # ViT-B-32's configuration ships with open_clip; its weights do not.
    names = CLIPFeaturizer("ViT-B-32", pretrained="openai").get_feature_names_out()

    assert len(names) == 512
    assert names[0] == "clipfeaturizer0"


def test_pickle_is_small_and_holds_no_torch_objects(tiny_model_name, paths):
    featurizer = _featurizer(tiny_model_name)
    before = featurizer.transform(paths[:3])  # the model is loaded by now

    blob = pickle.dumps(featurizer)
    restored = pickle.loads(blob)

    assert len(blob) < 2048
    assert b"torch" not in blob
    for value in vars(restored).values():
        assert not isinstance(value, torch.Tensor | torch.nn.Module)
    np.testing.assert_allclose(restored.transform(paths[:3]), before, atol=ATOL)


def test_sklearn_tags(tiny_model_name):
    featurizer = CLIPFeaturizer(tiny_model_name)

    tags = get_tags(featurizer)

    assert tags.requires_fit is False
    assert tags.input_tags.string
    assert not tags.input_tags.two_d_array
    check_is_fitted(featurizer)


def test_set_output_pandas(tiny_model_name, paths):
    pd = pytest.importorskip("pandas")
    series = pd.Series(paths[:4], index=[10, 11, 12, 13])
    featurizer = _featurizer(tiny_model_name)

    frame = featurizer.set_output(transform="pandas").transform(series)

    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [f"clipfeaturizer{i}" for i in range(EMBED_DIM)]
    assert list(frame.index) == [10, 11, 12, 13]
    plain = _featurizer(tiny_model_name).transform(paths[:4])
    np.testing.assert_allclose(frame.to_numpy(), plain, atol=ATOL)


def test_first_step_of_a_pipeline(tiny_model_name, digit_files):
    paths, labels = digit_files[0][:60], digit_files[1][:60]
    pipeline = Pipeline(
        [
            ("clip", _featurizer(tiny_model_name)),
            ("logistic", LogisticRegression(max_iter=300)),
        ]
    )

    pipeline.fit(paths, labels)

    # The same model fitted by hand on the embeddings predicts the same.
    embeddings = _featurizer(tiny_model_name).transform(paths)
    by_hand = LogisticRegression(max_iter=300).fit(embeddings, labels)
    np.testing.assert_array_equal(pipeline.predict(paths), by_hand.predict(embeddings))
    assert set(pipeline.classes_) == set(labels)


def _not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not pixels\n")
    return str(path)


def _missing_file(tmp_path):
    return str(tmp_path / "gone.png")


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    "bad", [_not_an_image, _missing_file], ids=["not-an-image", "missing"]
)
@pytest.mark.parametrize("method", ["transform", "encode_views"])
# An embedding cache reads every item up front to address it, before the
# loader decodes anything: a second route to the same error. It is a folder
# here, since features left in the process-wide memory cache, computed in
# small batches, would differ in the last bit from those other tests expect.
@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "disk-cache"])
def test_bad_file_in_the_middle_is_named(
    tiny_model_name, paths, tmp_path, num_workers, bad, method, cached
):
    bad_path = bad(tmp_path)
    images = [*paths[:5], bad_path, *paths[5:8]]
    # Small batches put the bad file in a later batch than the first.
    featurizer = _featurizer(
        tiny_model_name,
        batch_size=2,
        num_workers=num_workers,
        embedding_cache=tmp_path / "embeddings" if cached else None,
    )
    encode = getattr(featurizer, method)

    with pytest.raises(ImageLoadError) as info:
        encode(images)

    assert "index 5" in str(info.value)
    assert bad_path in str(info.value)
    assert info.value.index == 5
    assert info.value.source == bad_path


def test_unavailable_pretrained_tag_fails_fast_and_explains(tmp_path, mixed):
    # An empty cache_dir keeps weights cached on this machine out of the
    # test. conftest sets HF_HUB_OFFLINE=1; without it huggingface_hub
    # retries for about a minute before giving up.
    featurizer = CLIPFeaturizer("ViT-B-32", pretrained="openai", cache_dir=tmp_path)

    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as info:
        featurizer.transform(mixed[:1])
    elapsed = time.perf_counter() - start

    message = str(info.value)
    assert elapsed < 20
    assert "'ViT-B-32'" in message
    assert "'openai'" in message
    assert "pretrained='/path/to/checkpoint.pt'" in message
    assert "local-dir:" in message


def test_missing_checkpoint_file(tmp_path, mixed):
    checkpoint = str(tmp_path / "nowhere" / "weights.pt")

    with pytest.raises(PretrainedWeightsError) as info:
        CLIPFeaturizer("ViT-B-32", pretrained=checkpoint).transform(mixed[:1])

    assert checkpoint in str(info.value)
    assert "must exist" in str(info.value)


@pytest.fixture
def tinyclip(tiny_model_dir, tmp_path, monkeypatch):
    """Register the tiny architecture with open_clip as ``"tinyclip"``."""
    import open_clip
    from open_clip import factory

    # The registry is process-wide and add_model_config edits it in place:
    # register into copies, and the originals come back untouched.
    monkeypatch.setattr(
        factory, "_MODEL_CONFIG_PATHS", list(factory._MODEL_CONFIG_PATHS)
    )
    monkeypatch.setattr(factory, "_MODEL_CONFIGS", dict(factory._MODEL_CONFIGS))
    config = json.loads((tiny_model_dir / "open_clip_config.json").read_text())
    path = tmp_path / "tinyclip.json"
    path.write_text(json.dumps(config["model_cfg"]))
    open_clip.add_model_config(path)
    assert "tinyclip" in open_clip.list_models()
    return "tinyclip"


def test_local_checkpoint_files(tinyclip, tiny_model_dir, tiny_model_name, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = torch.load(tiny_model_dir / "open_clip_pytorch_model.bin")
    torch.save(state, tmp_path / "tiny.pt")
    safetensors_torch.save_file(state, tmp_path / "tiny.safetensors")
    images = [np.full((16, 16), level, np.uint8) for level in (0, 90, 255)]
    prompts = ["a photo of a two.", "a photo of a nine."]

    reference = _featurizer(tiny_model_name)
    expected_images = reference.transform(images)
    expected_text = reference.encode_text(prompts)
    for name in ("tiny.pt", "tiny.safetensors"):
        # A Path is accepted as well as a str.
        featurizer = _featurizer(tinyclip, pretrained=tmp_path / name)
        assert featurizer.embed_dim == EMBED_DIM
        np.testing.assert_allclose(
            featurizer.transform(images), expected_images, atol=1e-6
        )
        np.testing.assert_allclose(
            featurizer.encode_text(prompts), expected_text, atol=1e-6
        )


def test_corrupt_checkpoint_file(tinyclip, tmp_path, mixed):
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"this is no checkpoint")

    with pytest.raises(PretrainedWeightsError, match="broken.pt"):
        CLIPFeaturizer(tinyclip, pretrained=str(checkpoint)).transform(mixed[:1])


def test_random_weights_warn(tiny_model_name, mixed):
    # The warning comes with the load: forget a model an earlier test loaded.
    clear_model_cache()

    with pytest.warns(RandomWeightsWarning, match="pretrained=None"):
        random = _featurizer(tiny_model_name, pretrained=None).transform(mixed)
    trained = _featurizer(tiny_model_name).transform(mixed)

    # The checkpoint in the folder was not loaded.
    assert not np.allclose(random, trained, atol=1e-3)


def test_clear_model_cache(tiny_model_name, mixed, monkeypatch):
    loads = []
    load = _models._load

    def counting_load(spec):
        loads.append(spec)
        return load(spec)

    monkeypatch.setattr(_models, "_load", counting_load)
    featurizer = _featurizer(tiny_model_name)
    before = featurizer.transform(mixed)
    featurizer.transform(mixed)
    loaded_so_far = len(loads)

    clear_model_cache()
    after = featurizer.transform(mixed)

    # At most one load before (none if an earlier test loaded the model),
    # exactly one more after the cache was cleared.
    assert loaded_so_far <= 1
    assert len(loads) == loaded_so_far + 1
    np.testing.assert_allclose(after, before, atol=ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_model_name, mixed):
    cpu = _featurizer(tiny_model_name, device="cpu")
    cuda = _featurizer(tiny_model_name, device="cuda", precision="fp32")
    mixed_precision = _featurizer(tiny_model_name, device="cuda")

    np.testing.assert_allclose(cuda.transform(mixed), cpu.transform(mixed), atol=1e-4)
    np.testing.assert_allclose(
        cuda.encode_views(mixed, n_views=2, random_state=0),
        cpu.encode_views(mixed, n_views=2, random_state=0),
        atol=1e-3,
    )
    np.testing.assert_allclose(
        cuda.encode_text(["a digit"]), cpu.encode_text(["a digit"]), atol=1e-4
    )
    # Autocast runs in half precision: close to fp32, not equal.
    similarity = np.sum(mixed_precision.transform(mixed) * cpu.transform(mixed), 1)
    assert similarity.min() > 0.99
