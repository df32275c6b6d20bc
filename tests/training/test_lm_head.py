"""TRL's fused LM head on a CPU: only labelled positions are projected inside ``labelled_positions_only``,
with the same log-probabilities, loss and gradients as TRL's all-positions path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer import utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from astra_synth.training.lm_head import labelled_positions_only


def _model() -> Any:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return model


def _run(model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[Any, list[Any]]:
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
    out.loss.backward()
    return out, [p.grad.clone() for p in model.parameters()]


def test_only_labelled_positions_are_projected_with_the_same_loss_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model()
    ids = torch.randint(0, 512, (3, 40))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0  # left padding
    labels = torch.full_like(ids, -100)
    labels[0, 20:30] = ids[0, 20:30]  # an assistant turn per row
    labels[1, 5:12] = ids[1, 5:12]
    labels[2, 30:] = ids[2, 30:]
    projected: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden: torch.Tensor, *args: Any) -> Any:
        projected.append(hidden.size(0))
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    full, full_grads = _run(model, ids, mask, labels)
    with labelled_positions_only():
        compact, compact_grads = _run(model, ids, mask, labels)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # restored after the block

    labelled = int((labels[:, 1:] != -100).sum())
    assert projected == [3 * 39, labelled]
    torch.testing.assert_close(compact.loss, full.loss)
    torch.testing.assert_close(compact.log_probs, full.log_probs)
    torch.testing.assert_close(compact.entropy, full.entropy)
    assert torch.equal(compact.is_top1, full.is_top1)
    for a, b in zip(compact_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)
