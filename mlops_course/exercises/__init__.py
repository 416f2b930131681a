"""Exercise checks: ``check("02.1", answer)`` prints feedback and never raises.

Each lesson's checkers live in ``lessonNN.py`` and register themselves with :func:`exercise`. A checker
receives the learner's answer (and any extra arguments the notebook passes) and returns a :class:`Feedback`.
When the answer is still ``None`` or ``...`` (the stub was not filled in, e.g. in the learner edition), the
learner is told so instead. Anything a checker raises is turned into feedback too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

NOT_DONE = "not yet"


@dataclass(frozen=True)
class Feedback:
    """The verdict of one check: ``ok`` and a message (with a hint when not ok)."""

    ok: bool
    message: str
    hint: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"[correct] {self.message}"
        return f"[{NOT_DONE}] {self.message}" + (f" Hint: {self.hint}" if self.hint else "")


def correct(message: str = "Well done.") -> Feedback:
    return Feedback(True, message)


def wrong(message: str, hint: str = "") -> Feedback:
    return Feedback(False, message, hint)


Checker = Callable[..., Feedback]
_REGISTRY: dict[str, tuple[str, Checker]] = {}


def exercise(exercise_id: str, title: str) -> Callable[[Checker], Checker]:
    """Register a checker under an id like ``"02.1"`` (lesson number, dot, exercise number)."""

    def register(func: Checker) -> Checker:
        _REGISTRY[exercise_id] = (title, func)
        return func

    return register


def _load(exercise_id: str) -> None:
    lesson = exercise_id.split(".", 1)[0]
    if lesson.isdigit():
        try:
            importlib.import_module(f"mlops_course.exercises.lesson{int(lesson):02d}")
        except ModuleNotFoundError:
            pass


def evaluate(exercise_id: str, answer=None, *args, **kwargs) -> Feedback:
    """Run the checker of ``exercise_id`` on an answer and return its feedback (never raises)."""
    _load(exercise_id)
    if exercise_id not in _REGISTRY:
        return wrong(f"there is no exercise {exercise_id!r}.", "check the id in the call to check().")
    title, func = _REGISTRY[exercise_id]
    if answer is None or answer is Ellipsis:
        return wrong(f"exercise {exercise_id} ({title}) is not answered yet.",
                     "fill in the cell above, run it, then run this check again.")
    try:
        return func(answer, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the learner's answer may be anything: never let a check crash the lesson
        return wrong(f"the check could not use your answer ({type(exc).__name__}: {exc}).",
                     "look at the type and shape the exercise asks for.")


def check(exercise_id: str, answer=None, *args, **kwargs) -> None:
    """Print feedback on the learner's answer (use :func:`evaluate` to get it as a value)."""
    print(f"Exercise {exercise_id}: {evaluate(exercise_id, answer, *args, **kwargs)}")


def registered() -> dict[str, str]:
    """Ids and titles of the exercises loaded so far."""
    return {key: title for key, (title, _) in sorted(_REGISTRY.items())}
