import pytest

from mlops_course import gha_expr

GATE = {"needs": {"gate": {"outputs": {"promote": "true"}}}, "github": {"event_name": "push"}}


@pytest.mark.parametrize(("condition", "expected"), [
    ("needs.gate.outputs.promote == 'true'", True),
    ("${{ needs.gate.outputs.promote == 'false' }}", False),
    ("needs.gate.outputs.promote == 'TRUE'", True),  # strings compare case-insensitively
    ("fromJSON(needs.gate.outputs.promote)", True),
    ("needs.gate.outputs.promote == true", False),  # 'true' as a number is NaN: never equal to true (1)
    ("github.event_name != 'pull_request' && needs.gate.outputs.promote == 'true'", True),
    ("!(github.event_name == 'push')", False),
    ("needs.missing.outputs.x || 'fallback'", True),
    ("contains(github.event_name, 'us')", True),
    ("startsWith(github.event_name, 'pull')", False),
    ("1 < 2 && 2 >= 2", True),
])
def test_conditions_evaluate_as_github_does(condition, expected):
    assert gha_expr.evaluate(condition, GATE) is expected


def test_status_functions_and_the_implied_success():
    assert gha_expr.evaluate("true", GATE, status="failure") is False  # success() is implied
    assert gha_expr.evaluate("always()", GATE, status="failure") is True
    assert gha_expr.evaluate("failure() && true", GATE, status="failure") is True


@pytest.mark.parametrize("condition", ["needs.gate.outputs.promote = 'true'", "'unterminated", "promote ==",
                                       "unknownFunction(1)"])
def test_text_that_is_not_an_expression_is_refused(condition):
    with pytest.raises(gha_expr.ExpressionError):
        gha_expr.evaluate(condition, GATE)
