"""numpydoc validation of every public docstring.

The public objects are the classes and functions of ``sktip.__all__``,
``sktip.exceptions.__all__`` and ``sktip.templates.__all__``, and the public
methods and properties that sktip's classes define themselves (those
inherited from scikit-learn are validated by scikit-learn). The API
reference, ``docs/api.rst``, must list every one of those public names.
Skipped without numpydoc, which the ``test`` extra installs.
"""

import inspect
import re
from pathlib import Path

import pytest

import sktip
import sktip.dask
import sktip.exceptions
import sktip.templates
import sktip.testing

validate = pytest.importorskip("numpydoc.validate").validate

# Ignored everywhere:
# - RT02 wants the type alone on the first line of Returns; like
#   scikit-learn we name the returned value ("self : TipAdapterClassifier").
IGNORED_EVERYWHERE = {"RT02"}

# Ignored for methods and properties, as scikit-learn does: an extended
# summary (ES01), a See Also section (SA01) and examples (EX01) belong in the
# class docstring, which shows the methods working together.
IGNORED_FOR_MEMBERS = {"ES01", "SA01", "EX01"}

# Ignored for exception and warning classes: they are raised or issued by
# sktip, never called by users, so examples (EX01) would only show a raise.
IGNORED_FOR_EXCEPTIONS = {"EX01"}

MODULES = (sktip, sktip.exceptions, sktip.templates, sktip.testing, sktip.dask)


def _public_objects():
    """Yield ``(import path, object, kind)`` of every public docstring."""
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            path = f"{module.__name__}.{name}"
            if inspect.isfunction(obj):
                yield path, obj, "function"
            elif inspect.isclass(obj):
                is_exception = issubclass(obj, BaseException)
                yield path, obj, "exception" if is_exception else "class"
                if not is_exception:
                    yield from _public_members(path, obj)


def _public_members(path, cls):
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if callable(member) or isinstance(member, property):
            yield f"{path}.{name}", member, "member"


PUBLIC_OBJECTS = sorted({path: kind for path, _, kind in _public_objects()}.items())


def _ignored(kind):
    ignored = set(IGNORED_EVERYWHERE)
    if kind == "member":
        ignored |= IGNORED_FOR_MEMBERS
    if kind == "exception":
        ignored |= IGNORED_FOR_EXCEPTIONS
    return ignored


def test_public_objects_are_found():
    paths = dict(PUBLIC_OBJECTS)
    assert paths["sktip.TipAdapterClassifier"] == "class"
    assert paths["sktip.TipAdapterClassifierCV.fit"] == "member"
    assert paths["sktip.CLIPFeaturizer.embed_dim"] == "member"
    assert paths["sktip.exceptions.ImageLoadError"] == "exception"
    assert paths["sktip.templates.make_prompts"] == "function"


@pytest.mark.parametrize(
    "path, kind", PUBLIC_OBJECTS, ids=[p for p, _ in PUBLIC_OBJECTS]
)
def test_docstring(path, kind):
    result = validate(path)
    ignored = _ignored(kind)
    errors = [
        f"{code}: {message}"
        for code, message in result["errors"]
        if code not in ignored
    ]
    assert not errors, f"{path} ({result['file']}:{result['file_line']}):\n" + (
        "\n".join(errors)
    )


def test_api_reference_lists_every_public_name():
    api = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
    if not api.is_file():
        pytest.skip("docs/api.rst is not part of this checkout")
    pattern = r"^[ \t]*(?:\.\. \w+:: )?(\w+)[ \t]*$"
    listed = set(re.findall(pattern, api.read_text(), re.MULTILINE))
    for module in MODULES:
        missing = sorted(set(module.__all__) - listed)
        assert not missing, f"docs/api.rst lacks {module.__name__}: {missing}"
