"""verl's agent loop and reward hook for arenas; imported by verl 0.9.1 (``astra export verl`` wires it in).

Only a verl environment imports this module (our own venv has no verl; verl brings the deps): ``pip install
--no-deps astra-synth pydantic websockets pyyaml aiohttp`` there. ``ArenaAgentLoop`` plays one episode per row
on an arena server (``astra arenas serve``) through :class:`~astra_synth.arenas.remote.RemoteArenaEnv`: it
resets the row's arena with the row's seed (the server sends the tools, full schemas, in that seed's order),
renders the prompt with verl's token builder, and per turn asks verl's generation backend for tokens, parses
tool calls with our one parser (malformed calls go to the server and count against precision), sends them as
one step and appends the tool messages whole (no 256-character cut). A turn without calls is the final answer;
the server then scores the episode with our ``ArenaEnv`` F1, which the loop keeps in ``extra_fields``, where
verl's reward loop passes it to :func:`compute_score` as ``extra_info``.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import (  # type: ignore[import-not-found]
    AgentLoopBase,
    AgentLoopOutput,
    register,
)
from verl.utils.profiler import simple_timer  # type: ignore[import-not-found]

from astra_synth.agent.chat import Message, content_without_calls, parse_hermes_calls
from astra_synth.arenas.remote import RemoteArenaEnv
from astra_synth.export.verl import AGENT_NAME

REWARD_KEY = "astra_reward"
"""The ``extra_fields`` key (so ``extra_info`` key in :func:`compute_score`) holding the reward breakdown."""


@register(AGENT_NAME)
class ArenaAgentLoop(AgentLoopBase):  # type: ignore[misc]
    """One arena episode per row (``extra_info.arena_id`` and ``seed``), on the server at ``env_url``.

    It stops at a turn without tool calls (the answer), at ``rollout.response_length`` tokens, after
    ``rollout.multi_turn.max_assistant_turns`` turns when that is set, or when the server ends the episode
    (its own turn limit); an episode cut short is scored without an answer.
    """

    def __init__(self, *args: Any, env_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env_url = env_url
        self.response_length: int = self.rollout_config.response_length
        self.max_turns: int | None = self.rollout_config.multi_turn.get("max_assistant_turns")

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        info = dict(kwargs.get("extra_info") or {})
        messages = [dict(m) for m in kwargs["raw_prompt"]]
        metrics: dict[str, float] = {}
        request_id = uuid4().hex
        async with RemoteArenaEnv(self.env_url) as env:
            _, tools = await env.reset(arena_id=str(info["arena_id"]), seed=int(info.get("seed") or 0))
            ids: list[int] = await self.ct_build_initial_tokens(messages, tools=tools)
            mask: list[int] = []
            logprobs: list[float] = []
            final: str | None = None
            turns = 0
            while True:
                with simple_timer("generate_sequences", metrics):
                    out = await self.server_manager.generate(
                        request_id=request_id, prompt_ids=ids, sampling_params=sampling_params
                    )
                turns += 1
                merged, mask, merged_logprobs = await self.ct_merge_assistant_token(
                    ids,
                    out.token_ids,
                    mask,
                    logprobs if (logprobs or out.log_probs) else None,
                    assistant_logprobs=out.log_probs or None,
                )
                ids, logprobs = merged.token_ids, merged_logprobs or []
                text = self.tokenizer.decode(out.token_ids, skip_special_tokens=True)
                calls = parse_hermes_calls(text)
                if not calls:
                    final = text
                    break
                if len(mask) >= self.response_length or (self.max_turns and turns >= self.max_turns):
                    break
                with simple_timer("tool_calls", metrics):
                    replies = await env.step(calls)
                messages.append(
                    Message(
                        role="assistant", content=content_without_calls(text), tool_calls=calls
                    ).to_openai()
                )
                previous = list(messages)
                messages += [
                    Message(role="tool", tool_call_id=c.id, content=r.content).to_openai()
                    for c, r in zip(calls, replies, strict=True)
                ]
                merged, context_mask, merged_logprobs = await self.ct_merge_context_msg(
                    previous, messages, ids, mask, logprobs or None, tools=tools
                )
                if len(context_mask) >= self.response_length or (env.last is not None and env.last.done):
                    break
                ids, mask, logprobs = merged.token_ids, context_mask, merged_logprobs or []
            breakdown = await env.reward(final)
        prompt_length = len(ids) - len(mask)
        return AgentLoopOutput(
            prompt_ids=ids[:prompt_length],
            response_ids=ids[prompt_length:][: self.response_length],
            response_mask=mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] or None,
            num_turns=len(messages) - len(kwargs["raw_prompt"]) + 2,
            metrics=metrics,
            extra_fields={REWARD_KEY: breakdown.model_dump(mode="json")},
        )


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None, **_: Any
) -> dict[str, float]:
    """verl's reward hook: the arena F1 that :class:`ArenaAgentLoop` got from the server (``score``), with
    recall and precision for verl's metrics. A row not played by that loop has no reward to give: error."""
    breakdown = (extra_info or {}).get(REWARD_KEY)
    if not isinstance(breakdown, dict):
        raise ValueError(
            f"{data_source}: no arena reward in extra_info; rows of `astra export verl` must be played by "
            f"the {AGENT_NAME!r} agent loop (actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME})"
        )
    return {
        "score": float(breakdown["reward"]),
        "recall": float(breakdown["recall"]),
        "precision": float(breakdown["precision"]),
    }
