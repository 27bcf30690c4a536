"""Shared fixtures: a tiny open_clip model with random weights, saved the way
a user would save real ones, and real images written to disk."""

import os

# Nothing in the tests may wait on the network: open_clip then fails at once
# instead of retrying a model hub for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sktip.testing import TINY_CLIP_CONFIG, save_tiny_clip, write_digit_images

# Timing noise and thread contention on a 2-core machine make small matmuls
# stall; one thread keeps the suite fast and deterministic.
torch.set_num_threads(1)

TINY_CONFIG = TINY_CLIP_CONFIG


def save_tiny_model(folder, seed=0):
    """Write a seeded random tiny CLIP as an open_clip ``local-dir:`` folder."""
    save_tiny_clip(folder, seed=seed)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Folder of a tiny CLIP model: config plus checkpoint."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_model_name(tiny_model_dir):
    """``model_name`` that loads the tiny model through open_clip."""
    return f"local-dir:{tiny_model_dir}"


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's handwritten digits as uint8 arrays, with labels."""
    data = load_digits()
    images = (data.images * (255 / 16)).round().astype(np.uint8)
    return images, data.target


@pytest.fixture(scope="session")
def digit_files(tmp_path_factory):
    """The first 300 digits written as 32x32 JPEG and PNG files, with labels.

    Upscaled so that crops and resizing have pixels to work with.
    """
    paths, labels = write_digit_images(
        tmp_path_factory.mktemp("digits"), n_images=300, formats=("jpg", "png")
    )
    return list(paths), labels


@pytest.fixture
def tiny_featurizer(tiny_model_name):
    """A ``CLIPFeaturizer`` on the tiny model; its weights load once per process."""
    from sktip import CLIPFeaturizer

    return CLIPFeaturizer(tiny_model_name, batch_size=64)


def _few_shot_split(labels, shots, seed=0):
    """Indices of ``shots`` random samples per class, and of all the others."""
    rng = np.random.default_rng(seed)
    train = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == label), shots, replace=False)
            for label in np.unique(labels)
        ]
    )
    test = np.setdiff1d(np.arange(len(labels)), train)
    return train, test


@pytest.fixture(scope="session")
def few_shot_split():
    """``few_shot_split(labels, shots, seed=0) -> (train_indices, test_indices)``."""
    return _few_shot_split


@pytest.fixture(scope="session")
def digit_shots(digit_files):
    """A 4-shot split of ``digit_files``: train paths and labels, then test."""
    paths, labels = digit_files
    paths = np.array(paths)
    train, test = _few_shot_split(labels, shots=4)
    return paths[train], labels[train], paths[test], labels[test]
