"""The shared-prompt loss forward gives TRL's log-probabilities, entropies and gradients (real model)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from astra_synth.training.shared_prompt import SharedPromptGRPOTrainer


def _batch() -> tuple[torch.Tensor, torch.Tensor, int]:
    """Six rows as TRL builds them: left-padded prompts (two distinct, of different lengths, interleaved)
    and right-padded completions of different lengths."""
    prompts = [[1, 504, 3052, 314, 253, 1862, 28, 357, 2], [1, 9519, 314, 2]]
    completions = [[30, 31, 32, 2], [40, 2], [50, 51, 52, 53, 54, 2], [60, 61, 2], [70, 2], [80, 81, 82, 2]]
    which = [0, 1, 0, 1, 0, 0]
    width_p = max(len(p) for p in prompts)
    width_c = max(len(c) for c in completions)
    ids, mask = [], []
    for row, completion in enumerate(completions):
        prompt = prompts[which[row]]
        pad_p, pad_c = width_p - len(prompt), width_c - len(completion)
        ids.append([0] * pad_p + prompt + completion + [0] * pad_c)
        mask.append([0] * pad_p + [1] * (len(prompt) + len(completion)) + [0] * pad_c)
    return torch.tensor(ids), torch.tensor(mask), width_c


def _trainer() -> Any:
    trainer = SharedPromptGRPOTrainer.__new__(SharedPromptGRPOTrainer)  # only the loss forward is exercised
    trainer.accelerator = SimpleNamespace(autocast=nullcontext, is_main_process=True)
    return trainer


@pytest.fixture(scope="module")
def fused_model(embedded_model: Path) -> Any:
    model = AutoModelForCausalLM.from_pretrained(str(embedded_model), dtype=torch.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [4, 2])  # 2: chunks whose prompts all differ, in unsorted order
def test_log_probs_entropies_and_gradients_equal_the_full_forward(fused_model: Any, batch_size: int) -> None:
    model = fused_model
    ids, mask, keep = _batch()
    completion_mask = mask[:, -keep:].bool()
    trainer = _trainer()
    results = []
    widths: list[int] = []  # columns each forward of the completions reads (after the prompt's cache)
    hook = model.model.embed_tokens.register_forward_hook(lambda _m, args, _o: widths.append(args[0].size(1)))
    for method in (super(SharedPromptGRPOTrainer, trainer), trainer):  # TRL's own, then ours
        widths.clear()
        model.zero_grad()
        logps, entropy, _ = method._get_per_token_logps_and_entropies(
            model, ids, mask, keep, batch_size=batch_size, compute_entropy=True
        )
        (logps * completion_mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logps.detach(), entropy.detach(), grads))
    hook.remove()
    if batch_size == 2:  # chunks of rows (0, 1), (2, 3), (4, 5): only the middle one needs the full width
        assert widths[1::2] == [4 + 1, keep + 1, 4 + 1]  # each chunk's completions without their padding
    (full_logps, full_entropy, full_grads), (logps, entropy, grads) = results
    assert logps.shape == full_logps.shape == (6, keep)
    torch.testing.assert_close(logps[completion_mask], full_logps[completion_mask], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(entropy[completion_mask], full_entropy[completion_mask], atol=2e-4, rtol=1e-4)
    assert full_grads.keys() == grads.keys()
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"):
        scale = full_grads[name].abs().max()
        assert scale > 0
        torch.testing.assert_close(grads[name], full_grads[name], atol=1e-3 * float(scale), rtol=1e-3)


def test_a_steps_rows_reach_the_micro_batches_in_group_order() -> None:
    """TRL would shuffle the rows first, scattering each group (one prompt) over several micro-batches."""
    trainer = _trainer()
    rows = torch.arange(8)  # two groups of four, as the rollout returns them
    trainer.model = SimpleNamespace(training=True)
    trainer.num_iterations = 1
    trainer.args = SimpleNamespace(steps_per_generation=2)
    trainer._buffered_inputs = None
    trainer._generate_and_score_completions = lambda batch: {"prompt_ids": rows, "advantages": rows * 1.0}
    seen = []
    for step in range(4):  # two optimiser steps, each generating once
        trainer._step = step
        seen.append(trainer._prepare_inputs([])["prompt_ids"].tolist())
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]] * 2
