"""The records that flow between the trajectory stages (pipeline A).

One server travels inside every record, so each stage sees the tool documents it needs without a lookup and
each output carries its full provenance. Every record has a ``schema_version``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from astra_synth.agent.loop import Episode
from astra_synth.config import StrictModel
from astra_synth.tools.spec import ServerRecord

ChainOrigin = Literal["proposed", "walk", "server_only"]
TaskMode = Literal["chain", "server"]
Augmentation = Literal["none", "diverse", "complicate", "persona"]


class ParamSource(StrictModel):
    """Where one required argument of one chain step comes from, as the data-flow judge decided."""

    step: int = Field(ge=0, description="Index of the tool in the chain.")
    tool: str
    parameter: str
    source: Literal["task", "tool_output", "none"]
    from_step: int | None = Field(default=None, description="For tool_output: the earlier step's index.")
    reason: str = ""


class ChainVerification(StrictModel):
    """What each verification check saw; only chains that passed every enabled check carry one."""

    dataflow: list[ParamSource] = Field(default_factory=list)
    votes_valid: int = 0
    votes_total: int = 0
    back_translation_agree: int = 0
    back_translation_total: int = 0
    back_translation_chains: list[list[str]] = Field(
        default_factory=list, description="The chain each parsed back-translation round planned."
    )
    implied_task: str | None = Field(default=None, description="A task the vote judged coherent.")


class ChainSeed(StrictModel):
    """A unit of task generation: a tool chain of one server, or (``server_only``) just the server.

    ``num_tools`` is the chain length, or for server-only seeds the number of tools the task should need.
    """

    schema_version: Literal[1] = 1
    server: ServerRecord
    origin: ChainOrigin
    chain: list[str] = Field(default_factory=list)
    num_tools: int = Field(ge=1)
    proposed_task: str | None = None
    verification: ChainVerification | None = None


class Rating(StrictModel):
    score: int = Field(ge=1, le=5)
    level: str
    reasoning: str = ""


class TaskScores(StrictModel):
    """The five task-quality dimensions (paper's three + the authors' two tool-selection ones), 1..5."""

    question_quality: Rating
    scenario_realism: Rating
    tool_necessity: Rating
    selection_difficulty: Rating
    selection_uniqueness: Rating

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name).score for name in type(self).model_fields}


class Task(StrictModel):
    """A user request for one server, with the tools it is meant to need."""

    schema_version: Literal[1] = 1
    server: ServerRecord
    mode: TaskMode
    question: str = Field(min_length=1)
    target_tools: list[str]
    chain: list[str] = Field(default_factory=list, description="The verified chain behind a chain task.")
    server_analysis: str = ""
    augmentation: Augmentation = "none"
    original_question: str | None = Field(default=None, description="The question an augmentation rewrote.")
    persona: str | None = None
    chain_origin: ChainOrigin
    verification: ChainVerification | None = None
    scores: TaskScores | None = None


class Trajectory(Episode):
    """One rollout, whatever its outcome: the agent loop's episode (OpenAI messages, status, counts) with
    its task and the tools offered."""

    schema_version: Literal[1] = 1
    task: Task
    tools: list[dict[str, Any]]
