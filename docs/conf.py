"""Sphinx configuration of the sktip documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The gallery runs every ``examples/plot_*.py`` script offline, on real
images from installed packages and a tiny random-weight CLIP model.
"""

import os
import sys
from pathlib import Path

# Nothing in the build may wait on a model hub: a download attempt then
# fails at once instead of retrying for about a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "agg")

import torch  # noqa: E402

import sktip  # noqa: E402

# The gallery's tiny model does small matrix products, which stall when
# several threads compete for two busy cores; one thread is faster.
torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "sktip"
author = "The sktip developers"
copyright = "The sktip developers"  # noqa: A001
release = sktip.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]
default_role = "literal"

# -- autodoc, autosummary, numpydoc -------------------------------------------

autosummary_generate = True
autodoc_typehints = "none"
# Methods are listed by the autosummary class template, not by numpydoc.
numpydoc_show_class_members = False
numpydoc_attributes_as_param_list = True

# -- HTML ---------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sktip {release}"
html_theme_options = {
    "github_url": "https://github.com/sktip/sktip",
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_static_path = []
html_show_sourcelink = False

# -- sphinx-gallery -----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only plot_*.py scripts run; textile_few_shot.py is a command-line
    # script that wants pretrained weights, and is shown but not run.
    "filename_pattern": r"/plot_",
    "doc_module": ("sktip",),
    "backreferences_dir": "gen_modules/backreferences",
    "plot_gallery": True,
    "within_subsection_order": "gallery_order.ExampleOrder",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1,
}

# -- the scaling page ---------------------------------------------------------

# docs/scaling.rst is written separately. Until it exists, its entry is
# dropped from the user guide's toctree instead of failing the build.
_OPTIONAL_PAGES = {"user_guide": ["scaling"]}


def _drop_missing_pages(app, docname, source):
    for page in _OPTIONAL_PAGES.get(docname, []):
        if not (DOCS / f"{page}.rst").exists():
            source[0] = source[0].replace(f"\n   {page}\n", "\n")


def setup(app):
    app.connect("source-read", _drop_missing_pages)
