"""Mistakes a user makes, each answered by a clear error that names what is
wrong, and nothing that changes the user's process behind their back."""

import logging

import numpy as np
import pytest
import torch

from sktip import CLIPFeaturizer, TipAdapterClassifier, clear_model_cache
from sktip.templates import resolve_templates


def test_loading_a_model_leaves_the_root_logger_alone(tiny_model_name, digit_files):
    root = logging.getLogger()
    handlers = list(root.handlers)
    clear_model_cache()
    CLIPFeaturizer(tiny_model_name, embedding_cache=None).transform(digit_files[0][:1])
    assert root.handlers == handlers


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_needs_cuda(tiny_model_name, digit_files, precision):
    featurizer = CLIPFeaturizer(tiny_model_name, device="cpu", precision=precision)
    with pytest.raises(ValueError, match="CPU"):
        featurizer.transform(digit_files[0][:1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without GPU")
def test_cuda_device_without_gpu_is_a_device_error(tiny_model_name, digit_files):
    with pytest.raises(ValueError, match="no CUDA device"):
        CLIPFeaturizer(tiny_model_name, device="cuda").transform(digit_files[0][:1])


def test_unknown_device_is_a_device_error(tiny_model_name, digit_files):
    with pytest.raises(ValueError, match="not a torch device"):
        CLIPFeaturizer(tiny_model_name, device="gpu0").transform(digit_files[0][:1])


def test_table_of_paths_is_refused(tiny_model_name, digit_files):
    table = np.array(digit_files[0][:4]).reshape(2, 2)
    with pytest.raises(ValueError, match="1-D"):
        CLIPFeaturizer(tiny_model_name).transform(table)


def test_misspelled_template_set():
    with pytest.raises(ValueError, match="not a named template set"):
        resolve_templates("imagenett")


class _Featurizer:
    """A user featurizer whose outputs can be made wrong one at a time."""

    def __init__(self, wrong=None):
        self.wrong = wrong

    def transform(self, images):
        n_rows = len(images) - (self.wrong == "rows")
        return np.eye(len(images), 4)[:n_rows] + 0.1

    def encode_views(self, images, n_views, random_state):
        views = np.repeat(self.transform(images)[:, None], n_views, axis=1)
        return views[:, :-1] if self.wrong == "views" else views

    def encode_text(self, prompts):
        width = 5 if self.wrong == "width" else 4
        rows = 1 if self.wrong == "prompts" else len(prompts)
        return np.ones((rows, width))


@pytest.mark.parametrize(
    "wrong, message",
    [
        ("rows", r"featurizer\.transform must return .* shape \(3, 'n_features'\)"),
        ("views", r"featurizer\.encode_views must return .* \(3, 2, 'n_features'\)"),
        ("prompts", r"featurizer\.encode_text must return .* \(3, 'n_features'\)"),
        ("width", "encode_text returned 5 features"),
    ],
)
def test_featurizer_output_of_the_wrong_shape(wrong, message):
    augment_views = 0 if wrong == "rows" else 2
    clf = TipAdapterClassifier(_Featurizer(wrong), augment_views=augment_views)
    with pytest.raises(ValueError, match=message):
        clf.fit(["a", "b", "c"], [0, 1, 2])


@pytest.mark.parametrize(
    "text_features, message",
    [
        (np.ones(4), "text_features: Expected 2D array"),
        ({0: np.ones(4), 1: np.ones(3)}, r"text_features\[1\] has shape \(3,\)"),
        (np.full((2, 4), np.nan), "text_features: Input contains NaN"),
    ],
)
def test_text_features_errors_name_the_parameter(text_features, message):
    X, y = np.eye(4)[:2] + 0.1, [0, 1]
    with pytest.raises(ValueError, match=message):
        TipAdapterClassifier(text_features=text_features).fit(X, y)


def test_one_column_dataframe_points_to_the_column(tiny_model_name, digit_files):
    pandas = pytest.importorskip("pandas")
    table = pandas.DataFrame({"path": digit_files[0][:3]})
    with pytest.raises(ValueError, match=r"X\['path'\]"):
        CLIPFeaturizer(tiny_model_name).transform(table)
    # The column itself, a Series, is a 1-D sequence of images.
    assert CLIPFeaturizer(tiny_model_name).transform(table["path"]).shape == (3, 32)


def test_zero_text_vector_is_refused():
    with pytest.raises(ValueError, match=r"only zeros for class\(es\) \['b'\]"):
        TipAdapterClassifier(text_features=np.array([[1.0, 0.0], [0.0, 0.0]])).fit(
            np.eye(2), ["a", "b"]
        )
