"""TRL's ``environment_factory`` on arenas: the generated tools are the arenas' schemas, golden episodes
score 1 in process and through the arena server, and one real GRPO step of TRL's own loop plays them."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena, ToolSchema
from astra_synth.arenas.server import ArenaCorpus, ArenaServer
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.policy import golden_texts
from astra_synth.testing.servers import ThreadedServer
from astra_synth.training.models import hardware_args, load_tokenizer
from astra_synth.training.trl_env import ArenaToolEnv, trl_environments, trl_rows


@pytest.fixture(scope="module")
def server(sample_arenas: list[Arena], executor: ToolExecutor) -> Iterator[ThreadedServer]:
    with ThreadedServer(
        ArenaServer(ArenaCorpus({"sample": sample_arenas}), executor, token="").app()
    ) as running:
        yield running


def tools_of(env_class: type[ArenaToolEnv]) -> list[str]:
    """The methods TRL offers as tools (its own rule: public functions of the class but reset/get_reward)."""
    names = [n for n, _ in inspect.getmembers(env_class, predicate=inspect.isfunction)]
    return [n for n in names if not n.startswith("_") and n not in ("reset", "get_reward")]


def expected_schema(tool: ToolSchema) -> dict[str, Any]:
    """The tool's schema as transformers renders a typed function: no ``default`` key (the default is in
    the description), union types sorted, no empty ``required``."""
    spec = tool.function
    properties = {}
    for name, schema in spec.properties.items():
        prop = {k: v for k, v in schema.items() if k != "default"}
        if isinstance(prop["type"], list):
            prop["type"] = sorted(prop["type"])
        if "default" in schema:
            prop["description"] += f" Default: {json.dumps(schema['default'])}."
        properties[name] = prop
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if spec.required:
        parameters["required"] = spec.required
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": parameters},
    }


def play(env: ArenaToolEnv, arena: Arena) -> float:
    env.reset(**trl_rows([arena])[0])
    for turn in golden_turns(arena):
        for call in turn:
            arguments = json.loads(call["function"]["arguments"])
            reply = getattr(env, call["function"]["name"])(**arguments)
            assert not reply.startswith("Error"), reply
    return env.get_reward()


def test_generated_methods_are_the_arena_tool_schemas(
    sample_arenas: list[Arena], executor: ToolExecutor
) -> None:
    from transformers.utils.chat_template_utils import get_json_schema

    factories = trl_environments(sample_arenas, executor=executor)
    assert list(factories) == [a.id for a in sample_arenas]
    for arena in sample_arenas:
        env = factories[arena.id]()
        assert sorted(tools_of(type(env))) == sorted(t.function.name for t in arena.tools)
        for tool in arena.tools:
            assert get_json_schema(getattr(env, tool.function.name)) == expected_schema(tool)
    rows = trl_rows(sample_arenas[:2])
    assert rows[0]["environment"] == sample_arenas[0].id
    assert rows[0]["prompt"][-1] == {"role": "user", "content": sample_arenas[0].messages[-1].content}


def test_golden_episodes_score_one_in_process_and_through_the_server(
    sample_arenas: list[Arena], executor: ToolExecutor, server: ThreadedServer
) -> None:
    local = trl_environments(sample_arenas, executor=executor)
    remote = trl_environments(sample_arenas, url=server.url)
    for arena in sample_arenas:
        assert play(local[arena.id](), arena) == pytest.approx(1.0)
    env = remote[sample_arenas[1].id]()
    for _ in range(2):  # TRL pools instances: the same session serves the next rollout
        assert play(env, sample_arenas[1]) == pytest.approx(1.0)
        assert env.breakdown is not None and env.breakdown.calls == sum(
            map(len, golden_turns(sample_arenas[1]))
        )


def test_wrong_calls_are_errors_the_reward_counts(sample_arenas: list[Arena], server: ThreadedServer) -> None:
    arena = next(a for a in sample_arenas if a.id == "ecommerce-cheapest-mouse-order")
    env = trl_environments([arena], url=server.url)[arena.id]()
    env.reset()
    assert "missing required argument(s) ['quantity', 'country']" in env.quote_order(sku="TN-M204")  # type: ignore[attr-defined]
    assert "unexpected argument" in env.search_catalog(category="mouse", colour="red")  # type: ignore[attr-defined]
    assert env.get_reward() == 0.0 and env.breakdown is not None and env.breakdown.calls == 2


def test_bad_setups_are_refused(sample_arenas: list[Arena], executor: ToolExecutor) -> None:
    with pytest.raises(ValueError, match="either an arena server url or a sandbox executor"):
        trl_environments(sample_arenas)
    with pytest.raises(InputError, match="appears twice"):
        trl_environments(sample_arenas[:1] * 2, executor=executor)
    with pytest.raises(RuntimeError, match="reset"):
        trl_environments(sample_arenas[:1], executor=executor)[sample_arenas[0].id]().get_reward()


@pytest.mark.slow
@pytest.mark.timeout(400)  # model load + one GRPO step (2 arenas × 2 generations) on 2 shared CPU cores
def test_one_grpo_step_of_trls_own_loop_against_the_arena_server(
    embedded_model: Path, short_arenas: list[Arena], server: ThreadedServer, tmp_path: Path
) -> None:
    """TRL's rollout loop, tool parsing, tool calls, reward and loss are real; only sampling is scripted
    (per group: the golden episode, then a wrong answer), so the server's rewards are known: [1, 0]."""
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers.utils.chat_template_utils import get_json_schema
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    arenas = short_arenas[:2]
    tokenizer = load_tokenizer(str(embedded_model))
    played: list[ArenaToolEnv] = []

    def recording(env_class: type[ArenaToolEnv]) -> Any:
        def make() -> ArenaToolEnv:
            played.append(env_class())
            return played[-1]

        return make

    factories = trl_environments(arenas, url=server.url)
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=256,
        max_tool_calling_iterations=4,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        **hardware_args(),
    )
    trainer = GRPOTrainer(
        model=str(embedded_model),
        args=args,
        train_dataset=Dataset.from_list(trl_rows(arenas)),
        processing_class=tokenizer,
        environment_factory={name: recording(cls) for name, cls in factories.items()},
    )
    for arena in arenas:  # each row's tools are its arena's, with the arena's schemas
        offered = [get_json_schema(t) for t in trainer._env_tools[arena.id]]
        assert sorted(offered, key=str) == sorted((expected_schema(t) for t in arena.tools), key=str)

    shown: list[str] = []
    script = {a.messages[-1].content: golden_texts(a) for a in arenas}
    firsts: dict[str, int] = {}

    def scripted(prompt_ids: list[list[int]], *_: Any, **__: Any) -> tuple[list[list[int]], None]:
        out = []
        for ids in prompt_ids:
            text = tokenizer.decode(ids)
            shown.append(text)
            question = next(q for q in script if q and q in text)
            turn = text.count("<|im_start|>assistant") - 1
            if turn == 0:
                firsts[question] = firsts.get(question, 0) + 1
            golden = firsts[question] % 2 == 1
            reply = script[question][turn] if golden else "I cannot tell.<|im_end|>"
            out.append(tokenizer(reply, add_special_tokens=False)["input_ids"])
        return out, None

    trainer._generate_single_turn = scripted  # type: ignore[method-assign]
    trainer.train()

    assert trainer.state.global_step == 1
    for arena in arenas:
        tool = arena.tools[0].function.name
        assert any(f'"name": "{tool}"' in text and arena.messages[-1].content in text for text in shown)
    scored = [e.breakdown.reward for e in played if e.breakdown is not None]
    assert sorted(scored) == pytest.approx([0.0, 0.0, 1.0, 1.0])  # the server's F1 of each rollout
    logged = trainer.state.log_history[0]
    assert logged["reward"] == pytest.approx(0.5)
    assert {f"rewards/{factories[a.id].__name__}/mean" for a in arenas} <= set(logged)
    assert logged["tools/call_frequency"] > 0 and logged["tools/failure_frequency"] == 0
