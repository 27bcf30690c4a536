"""Tip-Adapter few-shot image classification on CLIP, for scikit-learn.

``CLIPFeaturizer`` turns images and prompts into CLIP embeddings with
open_clip; ``TipAdapterClassifier`` classifies with a cache of a few
labelled shots per class on top of zero-shot CLIP.
"""

from sktip._classifier import TipAdapterClassifier
from sktip._featurizer import CLIPFeaturizer
from sktip._models import clear_model_cache

__version__ = "0.1.0.dev0"

__all__ = [
    "CLIPFeaturizer",
    "TipAdapterClassifier",
    "clear_model_cache",
    "__version__",
]
