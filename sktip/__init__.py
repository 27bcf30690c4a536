"""Tip-Adapter few-shot image classification on CLIP, for scikit-learn.

``CLIPFeaturizer`` turns images and prompts into CLIP embeddings with
open_clip; ``TipAdapterClassifier`` classifies with a cache of a few
labelled shots per class on top of zero-shot CLIP, and
``TipAdapterClassifierCV`` chooses its residual ratio and sharpness by
cross-validation on the shots.
"""

from sktip._classifier import TipAdapterClassifier
from sktip._classifier_cv import TipAdapterClassifierCV
from sktip._embedding_store import clear_embedding_cache
from sktip._featurizer import CLIPFeaturizer
from sktip._models import clear_model_cache
from sktip._persistence import load, save
from sktip._search import REFERENCE_SEARCH_SCALES, reference_grid

#: The version of sktip, as a string.
__version__ = "0.1.0.dev0"

__all__ = [
    "CLIPFeaturizer",
    "REFERENCE_SEARCH_SCALES",
    "TipAdapterClassifier",
    "TipAdapterClassifierCV",
    "clear_embedding_cache",
    "clear_model_cache",
    "load",
    "reference_grid",
    "save",
    "__version__",
]
