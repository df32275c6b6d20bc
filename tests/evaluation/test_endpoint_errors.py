"""The error policy: errors are scored as failures unless allowed; any error fails the run by default."""

from __future__ import annotations

from astra_synth.evaluation.endpoint_errors import ErrorPolicy


def test_default_scores_errors_and_fails_on_any() -> None:
    policy = ErrorPolicy()
    assert policy.scored(10, 2) == 10
    assert policy.violation(10, 0) is None
    violation = policy.violation(10, 2, "episodes")
    assert (
        violation is not None
        and "2 of 10 episodes (20.0%)" in violation
        and "scored as failures" in violation
    )


def test_allowed_errors_leave_the_denominator_and_a_rate_is_tolerated() -> None:
    policy = ErrorPolicy(allow_errors=True, max_error_rate=0.25)
    assert policy.scored(10, 2) == 8
    assert policy.violation(10, 2) is None
    violation = policy.violation(10, 3)
    assert violation is not None and "left out of the score" in violation
