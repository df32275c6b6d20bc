"""Stage 5 — task quality scoring on five dimensions with per-dimension minima (the authors scored four and
filtered on none).

Each rating is one of five fixed phrases, constrained by the schema and mapped to 1..5 by exact lookup (the
authors' substring match could read "somewhat unrealistic" as "unrealistic"). A judge answer that cannot
be parsed rejects the task; it never passes by default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.structured import structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.trajectories.records import Rating, Task, TaskScores
from astra_synth.trajectories.tasks import tools_text

LEVELS: dict[str, tuple[str, ...]] = {
    "question_quality": ("very poor", "poor", "average", "good", "excellent"),
    "scenario_realism": (
        "unrealistic",
        "somewhat unrealistic",
        "moderately realistic",
        "realistic",
        "highly realistic",
    ),
    "tool_necessity": ("not needed", "barely needed", "somewhat needed", "needed", "essential"),
    "selection_difficulty": ("very easy", "easy", "medium", "hard", "very hard"),
    "selection_uniqueness": (
        "not unique",
        "somewhat unique",
        "moderately unique",
        "quite unique",
        "highly unique",
    ),
}
DIMENSIONS = tuple(LEVELS)


class ScoreConfig(StrictModel):
    min_scores: dict[str, int] = Field(
        default_factory=lambda: {
            "question_quality": 4,
            "scenario_realism": 4,
            "tool_necessity": 4,
            "selection_difficulty": 2,
            "selection_uniqueness": 1,
        },
        description="Minimum 1..5 rating per dimension; a dimension left out has no minimum.",
    )
    max_tokens: int = Field(default=1200, ge=64)

    @field_validator("min_scores")
    @classmethod
    def _known(cls, value: dict[str, int]) -> dict[str, int]:
        if unknown := sorted(set(value) - set(DIMENSIONS)):
            raise ValueError(f"unknown dimensions {unknown}; known: {list(DIMENSIONS)}")
        if bad := {k: v for k, v in value.items() if not 1 <= v <= 5}:
            raise ValueError(f"minima must be 1..5, got {bad}")
        return value


def _rated(dimension: str) -> type[BaseModel]:
    """A ``{reasoning, rating}`` answer whose rating is one of the dimension's five phrases."""
    levels: Any = Literal[LEVELS[dimension]]  # a Literal over the runtime tuple: an enum in the schema
    return create_model(
        f"{dimension.title().replace('_', '')}Rating",
        __config__=ConfigDict(extra="forbid"),
        reasoning=(str, ""),
        rating=(levels, ...),
    )


# Reasoning comes before each rating, and the dimensions in the prompt's order.
ScoreAnswer: type[BaseModel] = create_model(
    "ScoreAnswer",
    __config__=ConfigDict(extra="forbid"),
    **{dim: (_rated(dim), ...) for dim in DIMENSIONS},  # type: ignore[call-overload]
)


def to_scores(answer: BaseModel) -> TaskScores:
    ratings = {}
    for dim in DIMENSIONS:
        rated = getattr(answer, dim)
        ratings[dim] = Rating(
            score=LEVELS[dim].index(rated.rating) + 1, level=rated.rating, reasoning=rated.reasoning
        )
    return TaskScores(**ratings)


def below_minimum(scores: TaskScores, minima: dict[str, int]) -> dict[str, int]:
    """The dimensions under their minimum, with their scores."""
    values = scores.as_dict()
    return {dim: values[dim] for dim, least in minima.items() if values[dim] < least}


class ScoreStage:
    """Task → the task with its five scores, or a rejection naming the dimensions below their minima."""

    name = "score"
    version = "1"
    input_model = Task

    def __init__(self, config: ScoreConfig | None = None) -> None:
        self.config = config or ScoreConfig()

    @property
    def prompt(self) -> Prompt:
        return load_prompt("astra_synth.trajectories", "task_score.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {self.prompt.name: self.prompt.sha256}

    async def process(self, item: Task, ctx: StageContext) -> Task:
        assert ctx.llm is not None, "score needs an LLM"
        text = self.prompt.render(
            server_title=item.server.title,
            tools=tools_text(item.server),
            question=item.question,
            target_tools=", ".join(item.target_tools),
        )
        answer = await structured_chat(
            ctx.llm,
            [{"role": "user", "content": text}],
            ScoreAnswer,
            stage=self.name,
            max_tokens=self.config.max_tokens,
            seed=ctx.seed,
        )
        scores = to_scores(answer)
        if low := below_minimum(scores, self.config.min_scores):
            raise Rejection("task_score_below_minimum", ", ".join(f"{d}={s}" for d, s in low.items()))
        return item.model_copy(update={"scores": scores})
