"""A scripted stand-in for a HF causal LM's ``generate``, to drive the real episode runner deterministically.

Sampling a real policy cannot give a test a fixed conversation (a golden tool call, then the answer) or a
GRPO group with fixed rewards. :class:`ScriptedPolicy` has exactly the surface
:class:`~astra_synth.training.episodes.EpisodeRunner` uses (``parameters()`` for the device, ``generate``
with left-padded ``input_ids``) and answers each row with the next turn of that episode's script, cut to
``max_new_tokens`` as ``generate`` would. Everything else (tokenizer, chat template, sandbox, reward, TRL)
stays real. Every call's unpadded input rows are recorded, so a test can check what the model was shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena, GoldenCall


def golden_texts(arena: Arena) -> list[str]:
    """The assistant turns of a perfect episode as a model writes them (hermes blocks with the chat
    template's spacing, one turn per hop level), then the arena's answer; each ends with ``<|im_end|>``."""
    turns = [
        "\n".join(
            "<tool_call>\n"
            + json.dumps({"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])})
            + "\n</tool_call>"
            for c in calls
        )
        for calls in golden_turns(arena)
    ]
    return [t + "<|im_end|>" for t in [*turns, arena.final_answer]]


def respelled_golden_calls(arena: Arena, number: type[int] | type[float]) -> list[dict[str, Any]]:
    """The arena's golden calls as tool calls, every integral "number" argument written as ``number``: a
    policy may send ``118`` or ``118.0`` for a JSON number, and the reward must credit both."""
    calls = []
    for sub in arena.subtasks:
        if sub.golden_call is None:
            continue
        props = arena.tool_schema(sub.golden_call.name).properties
        args = {
            k: number(v) if props[k]["type"] == "number" and float(v).is_integer() else v
            for k, v in sub.golden_call.arguments.items()
        }
        calls.append(GoldenCall(name=sub.golden_call.name, arguments=args).as_tool_call(f"call_{sub.id}"))
    return calls


class ScriptedPolicy:
    """Episode ``i`` of a ``play`` call emits ``scripts[i]``, one list of token ids per turn.

    A turn without a tool call ends an episode in the runner, so only a script's last turn may lack one; the
    rows of each call are the scripts that still have turns, in order (anything else raises).
    """

    def __init__(self, scripts: list[list[list[int]]]) -> None:
        self._left = [list(turns) for turns in scripts]
        self.inputs: list[list[list[int]]] = []

    def parameters(self) -> Iterator[Any]:
        import torch

        yield torch.zeros(1)

    def generate(
        self, input_ids: Any, attention_mask: Any, max_new_tokens: int, pad_token_id: int, **_: Any
    ) -> Any:
        import torch

        active = [i for i, turns in enumerate(self._left) if turns]
        if len(active) != input_ids.shape[0]:
            rows = input_ids.shape[0]
            raise AssertionError(f"{rows} rows to generate, {len(active)} scripts still running")
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
        self.inputs.append(rows)
        turns = [self._left[i].pop(0)[:max_new_tokens] for i in active]
        width = max(len(t) for t in turns)
        new = torch.tensor([t + [pad_token_id] * (width - len(t)) for t in turns], dtype=input_ids.dtype)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)
