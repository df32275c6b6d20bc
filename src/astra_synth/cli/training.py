"""``astra train``: SFT warm-up and multi-turn GRPO on arenas (TRL). Thin: parse, build settings, call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from astra_synth.errors import InputError

app = typer.Typer(help="SFT and multi-turn GRPO with TRL (CPU or GPU; torchrun for several processes).")

_MODEL_HELP = "HF model id or local checkpoint, or 'embedded' (SmolLM2-135M converted from the bundled GGUF)."
_LORA_HELP = "Train a LoRA adapter of this rank instead of all weights (0: full fine-tuning)."


@app.command()
def sft(
    data: Annotated[
        list[Path], typer.Option("--data", exists=True, dir_okay=False, help="SFT JSONL (repeat).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (model, checkpoints, metrics).")],
    model: Annotated[str, typer.Option("--model", help=_MODEL_HELP)] = "embedded",
    epochs: Annotated[float, typer.Option("--epochs", min=0.01)] = 2.0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="-1: epochs decide.")] = -1,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 5e-6,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Per device.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    max_length: Annotated[int, typer.Option("--max-length", min=64)] = 2048,
    prefix_rows: Annotated[
        int,
        typer.Option(
            "--prefix-rows",
            min=1,
            help="Rows sharing a prompt prefix kept together in a batch, the prefix run once (1: random "
            "batches; 2 is faster on arena-family data, docs/training.md).",
        ),
    ] = 1,
    lora_r: Annotated[int, typer.Option("--lora-r", min=0, help=_LORA_HELP)] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Fine-tune on OpenAI-format tool conversations (golden arena episodes, pipeline A's export)."""
    from astra_synth.training.models import LoraConfig
    from astra_synth.training.sft import SFTConfig, run_sft

    settings = SFTConfig(
        model=model,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        prefix_rows=prefix_rows,
        lora=LoraConfig(r=lora_r, alpha=2 * lora_r) if lora_r else None,
        seed=seed,
    )
    try:
        result = run_sft(data, out, settings)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"),) * 2
    typer.echo(f"sft: {result.examples} conversations, {result.steps} steps, loss {first:.4f} → {last:.4f}")
    typer.echo(f"model: {result.out}")


@app.command()
def rl(
    arenas: Annotated[Path, typer.Option("--arenas", exists=True, dir_okay=False, help="Arena JSONL.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (policy, checkpoints, metrics).")],
    model: Annotated[str, typer.Option("--model", help=_MODEL_HELP)] = "embedded",
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 100,
    group_size: Annotated[int, typer.Option("--group-size", min=2, help="Rollouts per arena.")] = 4,
    groups: Annotated[int, typer.Option("--groups", min=1, help="Arena groups per step and device.")] = 2,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 2e-6,
    max_turns: Annotated[int, typer.Option("--max-turns", min=1)] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Per turn.")] = 128,
    max_completion: Annotated[int, typer.Option("--max-completion", min=8, help="Per episode.")] = 512,
    temperature: Annotated[float, typer.Option("--temperature", min=0.01)] = 1.0,
    k_per_band: Annotated[
        int | None,
        typer.Option(
            "--distractors",
            min=0,
            help="Per band (default 2; 0: none). Ignored with --env-url: the server draws.",
        ),
    ] = None,
    delta: Annotated[float, typer.Option("--delta", min=0.0, help="Min group reward std.")] = 1e-6,
    beta: Annotated[
        float, typer.Option("--beta", min=0.0, help="KL coefficient to the starting policy (0: none).")
    ] = 0.0,
    max_rolls: Annotated[int, typer.Option("--max-rolls", min=1, help="Rolls per step.")] = 4,
    mask_rewarded_failures: Annotated[
        bool,
        typer.Option(
            "--mask-rewarded-failures",
            help="Leave failed-call turns of above-mean episodes out of the loss (don't reinforce mistakes "
            "the episode recovered from).",
        ),
    ] = False,
    pick: Annotated[
        Literal["signal", "schedule"],
        typer.Option(
            "--pick",
            help="signal: draw families whose recent groups had differing rewards more often; "
            "schedule: the trainer's order, then uniform.",
        ),
    ] = "signal",
    save_steps: Annotated[int, typer.Option("--save-steps", min=1)] = 50,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint.")] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=0, help=_LORA_HELP)] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    env_url: Annotated[
        str | None,
        typer.Option(
            "--env-url",
            help="Play on an arena server (ws://host:port) serving these arenas, with its distractors.",
        ),
    ] = None,
) -> None:
    """GRPO (DAPO loss, optional KL) on arenas: sandboxed calls, F1 reward, distractors, batch filling."""
    from astra_synth.arenas.distractors import DistractorConfig
    from astra_synth.arenas.records import read_arenas
    from astra_synth.sandbox import get_executor
    from astra_synth.training.batching import FillConfig
    from astra_synth.training.episodes import EpisodeConfig
    from astra_synth.training.grpo import RLConfig, run_rl
    from astra_synth.training.models import LoraConfig

    try:
        pool = read_arenas(arenas)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    local_k = DistractorConfig().k_per_band if k_per_band is None else k_per_band
    settings = RLConfig(
        model=model,
        max_steps=max_steps,
        group_size=group_size,
        groups_per_device=groups,
        learning_rate=lr,
        beta=beta,
        mask_rewarded_failures=mask_rewarded_failures,
        episode=EpisodeConfig(
            max_turns=max_turns,
            max_new_tokens=max_new_tokens,
            max_completion_tokens=max_completion,
            temperature=temperature,
        ),
        fill=FillConfig(delta=delta, max_rolls=max_rolls, pick=pick),
        distractors=DistractorConfig(k_per_band=local_k, seed=seed) if local_k and env_url is None else None,
        lora=LoraConfig(r=lora_r, alpha=2 * lora_r) if lora_r else None,
        save_steps=save_steps,
        seed=seed,
    )
    if env_url is not None:
        if k_per_band is not None:
            typer.echo(
                "--env-url: --distractors is ignored; the arena server draws them "
                "(astra arenas serve --distractors K --distractor-seed S)",
                err=True,
            )
        result = run_rl(pool, None, out, settings, resume=resume, env_url=env_url)
    else:
        with get_executor() as executor:
            result = run_rl(pool, executor, out, settings, resume=resume)
    rewards = ", ".join(f"{r:.3f}" for r in result.rewards[-5:])
    typer.echo(f"rl: {result.steps} steps; last rewards: {rewards or '-'}")
    typer.echo(f"policy: {result.out}")
