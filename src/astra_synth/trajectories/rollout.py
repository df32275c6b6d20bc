"""Stage 6 — rollouts: the agent loop solves each task, its tool calls served by the tool router (live MCP
server, cassette replay, or the stateful emulator with code-level failure injection).

Every episode becomes a trajectory whatever its outcome (completed, out of model calls, out of time, model
endpoint failed), with its status and per-route call counts; the judge decides what enters the SFT set.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from astra_synth.agent.loop import AgentConfig, ToolReply, run_agent
from astra_synth.config import StrictModel
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.tools.router import ToolRouter
from astra_synth.trajectories.records import Task, Trajectory


class RolloutConfig(StrictModel):
    agent: AgentConfig = Field(default_factory=AgentConfig)
    show_query_probability: float = Field(
        default=0.5, ge=0, le=1, description="Chance the emulator sees the user's request (authors: 0.5)."
    )


class RolloutStage:
    """Task → Trajectory (never rejected: failures are trajectories with a status)."""

    name = "rollout"
    version = "1"
    input_model = Task

    def __init__(self, router: ToolRouter, config: RolloutConfig | None = None) -> None:
        self.router = router
        self.config = config or RolloutConfig()

    @property
    def prompt(self) -> Prompt:
        return load_prompt("astra_synth.trajectories", "rollout_system.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {self.prompt.name: self.prompt.sha256}

    async def process(self, item: Task, ctx: StageContext) -> Trajectory:
        assert ctx.llm is not None, "rollout needs an LLM"
        server = item.server
        tools = [t.openai() for t in server.tools]
        shown = item.question if ctx.rng.random() < self.config.show_query_probability else None

        async def execute(name: str, arguments: dict[str, Any]) -> ToolReply:
            outcome = await self.router.call(server, name, arguments, session=ctx.item_id, user_query=shown)
            route = "injected" if outcome.injected else outcome.provenance
            return ToolReply(content=outcome.message_content(), ok=outcome.ok, route=route)

        messages = [
            {"role": "system", "content": self.prompt.text},
            {"role": "user", "content": item.question},
        ]
        try:
            episode = await run_agent(
                ctx.llm, messages, tools, execute, self.config.agent, stage=self.name, seed=ctx.seed
            )
        finally:
            self.router.end_session(ctx.item_id)
        return Trajectory(task=item, tools=tools, **episode.model_dump())
