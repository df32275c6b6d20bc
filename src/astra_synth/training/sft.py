"""SFT warm-up with TRL's ``SFTTrainer`` on OpenAI-format tool conversations (ASTRA §C.5).

Inputs are JSONL rows ``{"messages": [...], "tools": [...]}``: the golden arena conversations
(:func:`~astra_synth.arenas.golden.golden_example`) and pipeline A's SFT export share the format. Before they
reach ``datasets``, tool-call ``arguments`` become JSON strings and ``tools`` one JSON string per row: Arrow
unifies dicts across rows into one struct, so ``{"country": "France"}`` would come back with ``"city": null``
from another row and the model would learn to emit null keys. Loss is on assistant tokens only (TRL swaps in
the template's ``{% generation %}`` variant); tool outputs and prompts are context, not targets. A row's
optional ``learn_from`` (a message index) makes the assistant turns before it context too — a recovery
example's mistaken call (:func:`~astra_synth.arenas.golden.recovery_example`); a data set with such rows goes
to TRL as prompt-completion pairs (every row, as ``datasets`` needs one format: split at ``learn_from`` or at
the first assistant turn), whose loss is the completion's assistant tokens.
Rows of a batch that share a prompt prefix run it once (:mod:`~astra_synth.training.shared_prefix_sft`),
and ``prefix_rows`` keeps such rows together in batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from astra_synth.agent.chat import arguments_string
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.training.lm_head import labelled_positions_only
from astra_synth.training.metrics import JsonlMetrics, read_metrics
from astra_synth.training.models import (
    LoraConfig,
    Precision,
    hardware_args,
    load_tokenizer,
    lora_config,
    resolve_model,
)


class SFTConfig(StrictModel):
    """What ``astra train sft`` runs; the defaults follow the paper's recipe scaled to one machine."""

    model: str = "embedded"
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int = Field(
        default=-1, description="Stop after this many optimiser steps (-1: epochs decide)."
    )
    learning_rate: float = Field(default=5e-6, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    batch_size: int = Field(default=4, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=2048, ge=64, description="Longer conversations are truncated.")
    lora: LoraConfig | None = None
    precision: Precision = "auto"
    seed: int = 0
    save_steps: int = Field(default=500, ge=1)
    logging_steps: int = Field(default=1, ge=1)
    prefix_rows: int = Field(
        default=1,
        ge=1,
        description="Rows sharing a prompt prefix kept together in a batch, their prefix run once (1: random "
        "batches; more is faster on family data but changes what a step sees: docs/training.md).",
    )


class SFTResult(BaseModel):
    """Where the model went and the training-loss curve."""

    out: Path
    steps: int
    losses: list[float]
    examples: int


def _string_arguments(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return {k: v for k, v in message.items() if k != "tool_calls"}
    fixed = []
    for call in calls:
        function = {**call["function"], "arguments": arguments_string(call["function"].get("arguments"))}
        fixed.append({**call, "function": function})
    return {**message, "tool_calls": fixed}


def to_trl_row(row: dict[str, Any]) -> dict[str, Any]:
    """One training row as TRL needs it: messages with string arguments, tools as a JSON string."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("row has no 'messages' list")
    if not any(m.get("role") == "assistant" for m in messages):
        raise ValueError("row has no assistant message to learn from")
    tools = row.get("tools") or []
    trl_row: dict[str, Any] = {
        "messages": [_string_arguments(m) for m in messages],
        "tools": tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False),
    }
    learn_from = row.get("learn_from")
    if learn_from is not None:
        if not isinstance(learn_from, int) or not 0 < learn_from < len(messages):
            last = len(messages) - 1
            raise ValueError(f"'learn_from' must be a message index in 1..{last}, got {learn_from!r}")
        if not any(m.get("role") == "assistant" for m in messages[learn_from:]):
            raise ValueError(f"row has no assistant message from 'learn_from' {learn_from} on to learn from")
        trl_row["learn_from"] = learn_from
    return trl_row


def as_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """A :func:`to_trl_row` row as a prompt-completion pair, split at ``learn_from`` (default: the first
    assistant turn): TRL then learns only the completion's assistant tokens."""
    messages = row["messages"]
    split = row.get("learn_from") or next(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    return {"prompt": messages[:split], "completion": messages[split:], "tools": row["tools"]}


def read_sft_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Every row of the given JSONL files in TRL's form; a bad line raises :class:`InputError`."""
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(to_trl_row(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                errors.append(f"{path}:{lineno}: {exc}")
    if errors:
        raise InputError("\n".join(errors))
    if not rows:
        raise InputError(f"no SFT rows in {', '.join(map(str, paths))}")
    if any("learn_from" in row for row in rows):
        return [as_prompt_completion(row) for row in rows]
    return rows


def run_sft(data: list[Path], out: Path, settings: SFTConfig | None = None) -> SFTResult:
    """Fine-tune on ``data`` and save the model (or the LoRA adapter) and tokenizer to ``out``."""
    settings = settings or SFTConfig()
    rows = read_sft_rows(data)
    trainer = sft_trainer(rows, out, settings)
    with labelled_positions_only():  # the loss covers assistant turns: project only those
        trainer.train()
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    losses = [float(r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r.get("loss") is not None]
    return SFTResult(out=out, steps=trainer.state.global_step, losses=losses, examples=len(rows))


def sft_trainer(rows: list[dict[str, Any]], out: Path, settings: SFTConfig) -> Any:
    """The TRL trainer :func:`run_sft` trains, its data set tokenized and labelled (``train_dataset``)."""
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.trainer.sft_config import SFTConfig as TrlSFTConfig

    from astra_synth.training.shared_prefix_sft import SharedPrefixSFTTrainer

    model_path = resolve_model(settings.model)
    tokenizer = load_tokenizer(model_path)
    args = TrlSFTConfig(
        output_dir=str(out),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length,
        packing=False,
        assistant_only_loss=True,
        seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=2,
        report_to=["tensorboard"],  # event files under out/runs/
        dataset_num_proc=None,
        **hardware_args(settings.precision),
    )
    return SharedPrefixSFTTrainer(
        model=model_path,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=[JsonlMetrics(out / "metrics.jsonl")],
        prefix_rows=settings.prefix_rows,
    )
