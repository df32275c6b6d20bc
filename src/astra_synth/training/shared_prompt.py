"""GRPO's loss forward with each distinct prompt run once (CPU speed; same log-probabilities).

A GRPO group is eight completions of one prompt (:meth:`ArenaRollouts.play_groups` gives a group one seed),
and on our arenas the prompt — system text plus tool schemas, ~600 tokens — is most of every sequence
(completions average ~100 tokens). TRL's loss forward runs every row in full: the backbone reads the same
prompt once per completion (off Triton devices TRL's fused LM head also scores every position;
:mod:`~astra_synth.training.lm_head` makes it skip unlabelled ones on a CPU too). Here a micro-batch's
distinct prompts (all but their last token) run once, with gradient, into a KV cache whose rows are then
repeated for the completions that share them; the completions run on top of it and only they reach the LM
head. Autograd sums the repeated rows' gradients back into the one prompt pass, so loss and gradients are
those of the full forward (a test compares both). Each micro-batch also drops the columns that are right
padding in all of its rows (TRL pads a step's completions to the step's longest); they are scored 0, as they
lie outside every loss mask.

TRL shuffles a step's rows before cutting them into micro-batches, which would scatter a group over
several; this trainer keeps them in the rollout's order (one group per micro-batch of ``group_size``).

Positions are what the full forward uses (``arange`` over the padded row, continued from the cache), and
the attention mask is the full row's, so left padding is treated identically.
"""

from __future__ import annotations

from typing import Any

from trl.trainer.grpo_trainer import GRPOTrainer

_VISION_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


def _used_columns(mask: Any) -> int:
    """Columns up to the last attended one of any row: the rest is right padding of every row. TRL pads a
    step's completions to its longest, and a group's own longest is often much shorter (a two-hop group's
    episodes beside a single-hop one's)."""
    attended = mask.any(dim=0).nonzero()
    return int(attended.max()) + 1 if attended.numel() else 1


class SharedPromptGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose per-token log-probabilities run each distinct prompt once per micro-batch."""

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        """TRL's, without shuffling the rows before they are cut into micro-batches: the rollout returns
        each group's episodes together, so a micro-batch of ``group_size`` rows is one prompt. With one
        iteration per generation every micro-batch lands in the same optimiser step, and DAPO's normaliser
        counts the whole step's tokens, so the order of rows does not change the update."""
        from trl.trainer.utils import split_tensor_dict

        model: Any = self.model
        args: Any = self.args  # a GRPOConfig
        if not model.training or self.num_iterations != 1:
            return super()._prepare_inputs(generation_batch)
        chunks: int = args.steps_per_generation
        buffered: Any = self._buffered_inputs
        if self._step % chunks == 0 or buffered is None:
            buffered = split_tensor_dict(self._generate_and_score_completions(generation_batch), chunks)
            self._buffered_inputs = buffered
        return buffered[self._step % chunks]

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Any,
        attention_mask: Any,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **extra: Any,
    ) -> tuple[Any, Any, Any]:
        split = input_ids.size(1) - logits_to_keep - 1  # the prompt but its last token: cached and shared
        if compute_aux_loss or split < 1 or any(extra.get(k) is not None for k in _VISION_KEYS):
            full = super()._get_per_token_logps_and_entropies
            logps, entropies, aux = full(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                         compute_entropy, compute_aux_loss, **extra)  # fmt: skip
            return logps, entropies, aux
        import torch

        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids = input_ids[start : start + batch_size]
            mask = attention_mask[start : start + batch_size]
            prefix = torch.cat([ids[:, :split], mask[:, :split]], dim=1)
            distinct, rows = torch.unique(prefix, dim=0, return_inverse=True)
            cache = self._prefix_cache(model, distinct[:, :split], distinct[:, split:])
            if rows.tolist() != list(range(ids.size(0))):  # ``unique`` sorts: reorder even if all differ
                cache.batch_select_indices(rows)
            width = split + _used_columns(mask[:, split:])  # this micro-batch's right padding is dropped
            suffix = ids[:, split:width]
            labels = suffix.masked_fill(mask[:, split:width] == 0, -100)
            with self.accelerator.autocast():
                out = model(
                    input_ids=suffix,
                    attention_mask=mask[:, :width],
                    cache=cache,
                    labels=labels,
                    fused_lm_head=True,
                )
            scored = width - split - 1  # completion columns left; the dropped ones score 0 (no loss mask)
            pad = (0, logits_to_keep - scored)
            logps.append(torch.nn.functional.pad(out.log_probs[:, out.log_probs.size(1) - scored :], pad))
            if compute_entropy:
                entropies.append(torch.nn.functional.pad(out.entropy[:, out.entropy.size(1) - scored :], pad))
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _prefix_cache(self, model: Any, ids: Any, mask: Any) -> Any:
        """The KV cache of each distinct prompt prefix, with gradient (the loss flows back through it)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        with self.accelerator.autocast():
            model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
        return cache
