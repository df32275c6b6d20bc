"""What an evaluation does with episodes the endpoint failed (after the client's retries), as opposed to the
model's own mistakes.

A model that writes bad JSON, calls an unknown tool or passes wrong arguments failed the task: that is
scored. A request that got a 5xx, a refused connection or a timeout measured nothing about the model: it is
an *error*, counted apart. By default errors still count as failures in the score (so a flaky endpoint
cannot flatter a model) and any error makes the command fail; ``allow_errors`` drops them from the score's
denominator, ``max_error_rate`` tolerates a share of them.
"""

from __future__ import annotations

from pydantic import Field

from astra_synth.config import StrictModel


class ErrorPolicy(StrictModel):
    allow_errors: bool = Field(
        default=False,
        description="Leave items the endpoint failed out of the score's denominator (default: scored 0).",
    )
    max_error_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of items that may fail at the endpoint before the evaluation counts as failed.",
    )

    def scored(self, total: int, errors: int) -> int:
        """The score's denominator."""
        return total - errors if self.allow_errors else total

    def violation(self, total: int, errors: int, what: str = "items") -> str | None:
        """Why the evaluation failed for endpoint reasons, or None when the error rate is within bounds."""
        rate = errors / total if total else 0.0
        if errors == 0 or rate <= self.max_error_rate:
            return None
        treated = "left out of the score" if self.allow_errors else "scored as failures"
        return (
            f"{errors} of {total} {what} ({rate:.1%}) failed at the endpoint, above --max-error-rate "
            f"{self.max_error_rate:g} ({treated}); see the errors in the report, fix the endpoint and rerun"
        )


class EndpointErrors(RuntimeError):
    """An evaluation whose endpoint failed more items than its policy allows (raised where no CLI reports it,
    e.g. the demo's evaluation steps, so the step is not stored as done)."""
