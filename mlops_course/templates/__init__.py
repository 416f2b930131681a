"""The files the lessons write, kept here as files: lesson 06's pytest suite (``ci_suite/``), the bike model's
GitHub workflow and its step fragments, and the Dockerfiles of lessons 03 and 04.

Each is read with :mod:`importlib.resources` and filled in one way: a ``<<name>>`` placeholder is replaced by
the value given for ``name``, once, without looking into the values. ruff lints the suite's files like the
rest of the package.
"""

from __future__ import annotations

import re
from importlib import resources

_PLACEHOLDER = re.compile(r"<<(\w+)>>")


def read(name: str) -> str:
    """The text of the template ``name`` (a path below this folder, e.g. ``"ci_suite/test_data.py"``)."""
    item = resources.files(__name__).joinpath(name)
    if not item.is_file():
        raise FileNotFoundError(f"no template {name!r} in mlops_course/templates")
    return item.read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """The template ``name`` with every ``<<key>>`` replaced by ``values[key]``.

    Raises ``ValueError`` naming the placeholders left without a value, or the values no placeholder asks for.
    """
    text = read(name)
    wanted = set(_PLACEHOLDER.findall(text))
    missing, unused = sorted(wanted - values.keys()), sorted(values.keys() - wanted)
    if missing or unused:
        raise ValueError(f"template {name}: no value for {missing}; no placeholder for {unused}")
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)
