"""
=======================================
Saving and loading a fitted classifier
=======================================

:func:`sktip.save` writes a fitted classifier to one safetensors file, and
:func:`sktip.load` reads it back without running any code from the file,
unlike pickle. The CLIP model is not stored, only what identifies it, and
``load`` checks that the featurizer it is given is the same model.

The pictures are the simulated textile images of the
``conformal-clip-data`` package (250x250 JPEG files of defect-free fabric
and fabric with a local or a global defect), and the CLIP model is a tiny
one with random weights.
"""

# %%
# Textile images and a tiny CLIP model
# ------------------------------------

import pickle
import shutil
import tempfile
from pathlib import Path

import conformal_clip_data
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import sktip
from sktip import CLIPFeaturizer, TipAdapterClassifier
from sktip.testing import save_tiny_clip

workdir = Path(tempfile.mkdtemp(prefix="sktip-save-load-"))

folders = {
    "nominal": conformal_clip_data.nominal_dir(),
    "local": conformal_clip_data.local_dir(),
    "global": conformal_clip_data.global_dir(),
}
rng = np.random.default_rng(0)
train, test = [], []
for label, folder in folders.items():
    files = sorted(str(path) for path in Path(folder).glob("*.jpg"))
    chosen = rng.choice(files, 8 + 20, replace=False)
    train += [(path, label) for path in chosen[:8]]
    test += [(path, label) for path in chosen[8:]]
X_train, y_train = map(np.array, zip(*train, strict=True))
X_test, y_test = map(np.array, zip(*test, strict=True))
print(f"{len(X_train)} shots and {len(X_test)} test images in {len(folders)} classes")

# %%
# Fit
# ---
# Eight shots per class, with class names that CLIP can read. ``alpha``,
# ``beta`` and ``augment_views`` suit the random-weight model (see the
# quickstart); with pretrained CLIP start from the defaults.

model_name = save_tiny_clip(workdir / "tiny-clip")
clf = TipAdapterClassifier(
    CLIPFeaturizer(model_name),
    alpha=100.0,
    beta=50.0,
    augment_views=0,
    class_names={
        "nominal": "defect-free textile",
        "local": "textile with a local defect",
        "global": "textile with a global defect",
    },
    random_state=0,
).fit(X_train, y_train)
print(f"test accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# Save, and load with the same model
# ----------------------------------
# The file holds the cache, the text classifier, the parameters and the
# identity of the featurizer: for a ``local-dir:`` model, the SHA-256 of its
# files, not their path. ``load`` needs the featurizer to use and checks it
# against that identity. The loaded classifier predicts exactly what the
# saved one did.

path = workdir / "textile.safetensors"
sktip.save(clf, path)
loaded = sktip.load(path, featurizer=CLIPFeaturizer(model_name))

same = np.array_equal(loaded.decision_function(X_test), clf.decision_function(X_test))
print(f"{path.name}: {path.stat().st_size} bytes; identical scores: {same}")

# %%
# A featurizer on other weights is refused, and the message names what
# differs. Here the weights come from another random seed:

other = save_tiny_clip(workdir / "other-clip", seed=1)
try:
    sktip.load(path, featurizer=CLIPFeaturizer(other))
except ValueError as error:
    print(str(error)[:400])

# %%
# Parameters that do not change the embeddings may differ, for example the
# device, the batch size or the embedding cache:

sktip.load(path, featurizer=CLIPFeaturizer(model_name, batch_size=8, device="cpu"))

# %%
# Compared with pickle
# --------------------
# A pickle of the classifier is about as small, since the CLIP weights are
# not part of it either. But unpickling runs code named in the file, so a
# pickle must only be loaded from a trusted source, while ``sktip.load``
# executes nothing from the file.

pickled = pickle.dumps(clf)
print(f"pickle: {len(pickled)} bytes, safetensors: {path.stat().st_size} bytes")

# %%
# The loaded classifier at work
# -----------------------------

predicted = loaded.predict(X_test)
fig, axes = plt.subplots(3, 6, figsize=(9, 5))
for row, label in zip(axes, folders, strict=True):
    for ax, index in zip(row, np.flatnonzero(y_test == label)[:6], strict=False):
        ax.imshow(Image.open(X_test[index]), cmap="gray")
        colour = "tab:green" if predicted[index] == label else "tab:red"
        ax.set_title(predicted[index], color=colour, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label)
fig.suptitle("Rows: true class; titles: prediction of the loaded classifier")
fig.tight_layout()
plt.show()

# %%
# With pretrained weights
# -----------------------
# Nothing in the saving and loading changes. The file stays small (a
# ViT-B-32 cache of 16 shots in 3 classes holds 48 keys of 512 numbers),
# and :func:`~sktip.load` loads the weights when it checks the
# featurizer's identity, so it needs them on the machine: the pretrained
# tag's download, or the same checkpoint file or ``local-dir:`` folder,
# which may sit at another path. The random model's accuracy above is near
# chance; its predictions, not their quality, are what this example
# checks.

shutil.rmtree(workdir)
