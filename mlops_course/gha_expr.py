"""Evaluate a GitHub Actions ``if:`` condition for given contexts, so a checker judges what it does.

Covers what job conditions use: context paths (``needs.gate.outputs.promote``, ``github.event_name``), string,
number and ``true``/``false``/``null`` literals, ``==  !=  <  <=  >  >=  &&  ||  !`` with parentheses, and the
functions ``success() always() failure() cancelled() fromJSON() contains() startsWith() endsWith()``. Comparisons
follow GitHub's rules: strings compare case-insensitively; values of different types are compared as numbers.

>>> evaluate("needs.gate.outputs.promote == 'true'", {"needs": {"gate": {"outputs": {"promote": "true"}}}})
True
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)"
                    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!(),])|(?P<name>[A-Za-z_][\w\-]*(?:\.[A-Za-z_*][\w\-]*)*))")


class ExpressionError(ValueError):
    """The condition is not an expression this evaluator understands (says where)."""


def _tokens(text: str) -> list[tuple[str, str]]:
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"cannot read {text[position:position + 20].strip()!r} in {text!r}")
        found.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return found


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        a, b = left.casefold(), right.casefold()
    elif type(left) is type(right) and not isinstance(left, (str, bool, int, float, type(None))):
        a, b = id(left), id(right)  # objects and arrays: equal only when the same
    else:
        a, b = _number(left), _number(right)
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value) if value is not None else False


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: str):
        self.text, self.tokens, self.at = text, _tokens(text), 0
        self.contexts, self.status = contexts, status

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.at += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.comparison()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.comparison()
            value = right if _truthy(value) else value
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() and self.peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            value = _compare(value, op, self.unary())
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if self.peek() == ("op", "("):
            return self.call(text)
        literal = {"true": True, "false": False, "null": None}
        if text in literal:
            return literal[text]
        value: Any = self.contexts
        for part in text.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def call(self, name: str) -> Any:
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        status = {"success": self.status == "success", "always": True, "failure": self.status == "failure",
                  "cancelled": self.status == "cancelled"}
        key = name.lower()
        if key in status and not args:
            return status[key]
        text = [str(a).casefold() if a is not None else "" for a in args]
        if key == "fromjson" and len(args) == 1:
            try:
                return json.loads(str(args[0]))
            except json.JSONDecodeError as exc:
                raise ExpressionError(f"fromJSON({args[0]!r}) is not JSON") from exc
        if key == "contains" and len(args) == 2:
            if isinstance(args[0], list):
                return any(_compare(item, "==", args[1]) for item in args[0])
            return text[1] in text[0]
        if key == "startswith" and len(args) == 2:
            return text[0].startswith(text[1])
        if key == "endswith" and len(args) == 2:
            return text[0].endswith(text[1])
        raise ExpressionError(f"{name}() with {len(args)} argument(s) is not supported here")


def evaluate(condition: str, contexts: Mapping[str, Any], *, status: str = "success") -> bool:
    """Would a job with this ``if:`` run, given ``contexts`` and the status of the jobs it needs?

    Like GitHub, a condition without a status function (``success()``, ``always()``, ``failure()``,
    ``cancelled()``) runs only when the needed jobs succeeded. Raises :class:`ExpressionError` for text that is
    not an expression.
    """
    text = str(condition)
    value = _truthy(_Parser(text, contexts, status).parse())
    if not re.search(r"\b(success|always|failure|cancelled)\s*\(", text, re.IGNORECASE):
        value = value and status == "success"
    return value
