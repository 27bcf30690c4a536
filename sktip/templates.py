"""Prompt templates and class names for the zero-shot text classifier.

A template is a string with one ``{}`` that the class name fills in, such as
``"a photo of a {}."``. The zero-shot classifier encodes every template for
every class, normalises each prompt embedding, averages them per class and
normalises the average again.

``TEMPLATES`` holds the sets the Tip-Adapter reference uses: seven prompts
for ImageNet and one prompt for each of the other ten datasets of its
benchmark. Pass one of its keys as ``templates=`` to use that set.
"""

from collections.abc import Mapping

import numpy as np

__all__ = ["DEFAULT_TEMPLATES", "TEMPLATES", "make_prompts", "resolve_templates"]

#: The template used when ``templates=None``: CLIP's plain photo prompt.
DEFAULT_TEMPLATES = ("a photo of a {}.",)

#: The reference's template sets by dataset name: seven prompts for
#: ``"imagenet"`` and one prompt for each of the other ten datasets.
TEMPLATES = {
    "imagenet": (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ),
    "caltech101": ("a photo of a {}.",),
    "dtd": ("{} texture.",),
    "eurosat": ("a centered satellite photo of {}.",),
    "fgvc_aircraft": ("a photo of a {}, a type of aircraft.",),
    "food101": ("a photo of {}, a type of food.",),
    "oxford_flowers": ("a photo of a {}, a type of flower.",),
    "oxford_pets": ("a photo of a {}, a type of pet.",),
    "stanford_cars": ("a photo of a {}.",),
    "sun397": ("a photo of a {}.",),
    "ucf101": ("a photo of a person doing {}.",),
}


def resolve_templates(templates):
    """Return the templates to use as a tuple of strings.

    This is how the ``templates`` parameter of the classifiers is read: a
    named set is looked up, a single template is wrapped in a tuple, and
    every template is checked for its placeholder.

    Parameters
    ----------
    templates : None, str or sequence of str
        ``None`` gives :data:`DEFAULT_TEMPLATES`. A key of :data:`TEMPLATES`
        gives that set. Any other string is one template; a sequence is a
        list of templates.

    Returns
    -------
    templates : tuple of str
        Each element contains exactly one ``{}``.

    Raises
    ------
    ValueError
        If the sequence is empty or a template lacks the ``{}`` placeholder
        or has more than one.

    See Also
    --------
    make_prompts : Fill the templates with class names.

    Examples
    --------
    >>> from sktip.templates import resolve_templates
    >>> resolve_templates(None)
    ('a photo of a {}.',)
    >>> resolve_templates("dtd")
    ('{} texture.',)
    >>> resolve_templates("a sketch of a {}.")
    ('a sketch of a {}.',)
    """
    if templates is None:
        return DEFAULT_TEMPLATES
    if isinstance(templates, str):
        if templates in TEMPLATES:
            return TEMPLATES[templates]
        if "{" not in templates and " " not in templates:
            raise ValueError(
                f"templates={templates!r} is not a named template set "
                f"({sorted(TEMPLATES)}) and has no '{{}}' placeholder to be a "
                "template itself."
            )
        templates = (templates,)
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates is empty; give at least one template with '{}'.")
    for position, template in enumerate(templates):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"template {position} ({template!r}) must be a string with exactly "
                "one '{}' placeholder for the class name, e.g. 'a photo of a {}.'; "
                f"named sets: {sorted(TEMPLATES)}."
            )
    return templates


def class_name_list(classes, class_names):
    """Return one readable name for every class, in ``classes`` order.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The fitted class labels.
    class_names : None or mapping
        ``None`` names each class ``str(label)`` with underscores turned into
        spaces. A mapping gives the name of each label and must cover every
        class.

    Returns
    -------
    names : list of str
    """
    if class_names is None:
        return [str(label).replace("_", " ") for label in classes]
    if not isinstance(class_names, Mapping):
        raise TypeError(
            "class_names must be a dict mapping each class label to its name, "
            f"got {type(class_names).__name__}."
        )
    missing = [label for label in classes if label not in class_names]
    if missing:
        labels = np.asarray(missing[:10]).tolist()
        raise ValueError(
            f"class_names has no name for class(es) {labels!r}; it must map "
            f"every label in classes_ ({len(classes)} classes) to a name."
        )
    return [str(class_names[label]) for label in classes]


def make_prompts(names, templates):
    """Fill every template with every name.

    The order is the one the zero-shot classifier expects: all prompts of
    the first class, then all prompts of the second, and so on, each class
    in template order.

    Parameters
    ----------
    names : sequence of str
        One readable name per class, in class order.
    templates : sequence of str
        Templates, each with one ``{}`` placeholder, as returned by
        :func:`resolve_templates`.

    Returns
    -------
    prompts : list of str
        Of length ``len(names) * len(templates)``, grouped by class: the
        prompts of class 0 first, in template order.

    See Also
    --------
    resolve_templates : Turn the ``templates`` parameter into templates.

    Examples
    --------
    >>> from sktip.templates import make_prompts
    >>> make_prompts(["cat", "dog"], ["a photo of a {}.", "art of the {}."])
    ['a photo of a cat.', 'art of the cat.', 'a photo of a dog.', 'art of the dog.']
    """
    return [template.replace("{}", name) for name in names for template in templates]
