"""SFT: rows reach TRL with string arguments; a few real steps lower the loss and teach the call format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner
from astra_synth.training.metrics import read_metrics
from astra_synth.training.models import load_tokenizer
from astra_synth.training.sft import SFTResult, read_sft_rows, to_trl_row


def test_rows_get_string_arguments_and_json_tools(tmp_path: Path) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    row = to_trl_row(
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "2"},
                {"role": "assistant", "content": "2"},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }
    )
    assert row["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert json.loads(row["tools"])[0]["function"]["name"] == "f"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\nnot json\n')
    with pytest.raises(InputError) as err:
        read_sft_rows([bad])
    assert f"{bad}:1: row has no assistant message" in str(err.value)
    assert f"{bad}:2:" in str(err.value)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a few real SFT steps of a 135M model on 2 shared CPU cores
def test_sft_lowers_loss_and_the_model_emits_a_tool_call(
    sft_result: SFTResult, short_arenas: list[Arena], executor: ToolExecutor
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    assert len(sft_result.losses) == sft_result.steps >= 2
    assert sft_result.losses[-1] < sft_result.losses[0]
    logged = read_metrics(sft_result.out / "metrics.jsonl")
    assert any("train_runtime" in r for r in logged)
    assert list((sft_result.out / "runs").rglob("events.out.tfevents.*"))  # TensorBoard

    model = AutoModelForCausalLM.from_pretrained(sft_result.out, dtype=torch.float32)
    runner = EpisodeRunner(
        load_tokenizer(str(sft_result.out)),
        EpisodeConfig(max_turns=1, max_new_tokens=80, max_completion_tokens=96, temperature=0),
    )
    episodes = runner.play(model, [(ArenaEnv(a, executor), None) for a in short_arenas])
    called = []
    for arena, episode in zip(short_arenas, episodes, strict=True):
        first = next(m for m in episode.messages if m["role"] == "assistant")  # after system + user
        names = [c["function"]["name"] for c in first.get("tool_calls", [])]
        if names and set(names) <= {t.function.name for t in arena.tools}:
            called.append(arena.id)
    assert called, f"no parseable call to an offered tool: {[e.messages[2:] for e in episodes]!r}"


def test_pipeline_a_export_trains_on_assistant_turns_only(embedded_model: Path, tmp_path: Path) -> None:
    """The trajectory export, read as SFT data and rendered with the training template TRL uses: every
    assistant turn (tool calls and the answer) is a target, tool outputs and the question are context."""
    from trl.chat_template_utils import get_training_chat_template

    from astra_synth.testing.scripts import judged_notes_trajectory, notes_server
    from astra_synth.trajectories.export import export_sft

    final = "Your Lisbon note says: book the tram tour."
    export_sft([("a1", judged_notes_trajectory(notes_server(), final))], tmp_path / "sft")
    (row,) = read_sft_rows([tmp_path / "sft" / "sft.jsonl"])
    tokenizer = load_tokenizer(str(embedded_model))
    rendered = tokenizer.apply_chat_template(
        row["messages"],
        tools=json.loads(row["tools"]),
        chat_template=get_training_chat_template(tokenizer) or tokenizer.chat_template,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    target = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert '"name": "search_notes"' in target and '"name": "read_note"' in target
    assert '"query": "Lisbon"' in target and final in target
    assert 'book the tram tour"}' in context and 'book the tram tour"}' not in target  # tool output
    assert "What does my note about Lisbon say?" in context and "Lisbon say?" not in target


@pytest.mark.slow
@pytest.mark.timeout(600)  # model load + one real SFT step on one short conversation
def test_an_sft_step_projects_only_the_assistant_tokens(
    embedded_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_sft trains inside ``labelled_positions_only``: the LM head sees the assistant tokens, not the
    tool schemas, question and tool outputs around them (training/lm_head.py)."""
    from trl.trainer import utils as trl_utils

    from astra_synth.testing.scripts import judged_notes_trajectory, notes_server
    from astra_synth.training.sft import SFTConfig, run_sft
    from astra_synth.trajectories.export import export_sft

    export_sft([("a1", judged_notes_trajectory(notes_server(), "Book the tram tour."))], tmp_path / "d")
    projected: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden: object, *args: object) -> object:
        projected.append(hidden.size(0))  # type: ignore[attr-defined]
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    settings = SFTConfig(model=str(embedded_model), max_steps=1, batch_size=1, save_steps=10)
    run_sft([tmp_path / "d" / "sft.jsonl"], tmp_path / "sft", settings)

    (row,) = read_sft_rows([tmp_path / "d" / "sft.jsonl"])
    tokens = load_tokenizer(str(embedded_model)).apply_chat_template(
        row["messages"], tools=json.loads(row["tools"]), tokenize=True, return_dict=True
    )["input_ids"]
    assert projected and all(0 < rows < len(tokens) // 3 for rows in projected), (projected, len(tokens))


@pytest.mark.slow
@pytest.mark.timeout(600)  # model load and tokenizing two conversations, twice
def test_a_recovery_rows_mistaken_turn_is_context_and_plain_rows_learn_as_before(
    embedded_model: Path, tmp_path: Path, short_arenas: list[Arena], executor: ToolExecutor
) -> None:
    """With a recovery row in the data every row goes to TRL as a prompt-completion pair: the recovery
    row learns the corrected call and the answer, not the mistake or the error; a plain row's labels are
    the ones it gets on its own (the messages form)."""
    from astra_synth.arenas.golden import golden_example, recovery_example
    from astra_synth.training.sft import SFTConfig, sft_trainer

    arena = short_arenas[0]
    golden, recovery = golden_example(arena, executor), recovery_example(arena, executor)
    data = tmp_path / "d.jsonl"
    data.write_text(golden.model_dump_json() + "\n" + recovery.model_dump_json() + "\n")
    (tmp_path / "plain.jsonl").write_text(golden.model_dump_json() + "\n")
    rows = read_sft_rows([data])
    assert all(set(r) == {"prompt", "completion", "tools"} for r in rows)
    settings = SFTConfig(model=str(embedded_model), max_length=2048)
    tokenizer = load_tokenizer(str(embedded_model))

    def targets(rows: list[dict[str, object]], name: str) -> list[list[int]]:
        dataset = sft_trainer(rows, tmp_path / name, settings).train_dataset
        pairs = [zip(r["input_ids"], r["labels"], strict=True) for r in dataset]
        return [[t for t, label in row if label != -100] for row in pairs]

    plain_target, recovery_target = targets(rows, "mixed")
    assert plain_target == targets(read_sft_rows([tmp_path / "plain.jsonl"]), "plain")[0]
    learned = tokenizer.decode(recovery_target)
    mistake, error = recovery.messages[recovery.learn_from - 2 : recovery.learn_from]  # type: ignore[operator]
    assert mistake["tool_calls"][0]["function"]["arguments"] not in learned
    assert "Error:" not in learned and error["content"].split(";")[0][7:] not in learned
    assert learned == tokenizer.decode(plain_target)  # the rest: exactly what the golden row learns
