"""SFT with each prompt prefix that a batch's conversations share run once (CPU speed; same loss and
gradients).

Golden conversations of one arena family share ~95 % of their prompt — the system text and tool schemas,
500–640 of ~800 tokens — and TRL's ``SFTTrainer`` runs every row in full. Here a batch holds runs of rows
that share a prefix (:class:`PrefixGroupedSampler`), and the loss forward groups a batch's rows by common
prefix (:func:`~astra_synth.training.prefix_groups.shared_prefixes` over each row's tokens before its first
labelled one), runs each prefix once with gradient into a KV cache whose rows are repeated for its members,
and runs the rows' rests on top of it. Autograd sums the repeated rows' gradients back into the one prefix
pass, so loss and gradients are those of the full forward (a test compares both); the prefix holds no labelled
token, so every label is still scored. :mod:`~astra_synth.training.shared_prompt` does the same for GRPO.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler
from trl.trainer.sft_trainer import SFTTrainer

from astra_synth.training.prefix_groups import prefix_layout, shared_prefixes


class PrefixGroupedSampler(Sampler[int]):
    """Each epoch: every group's rows shuffled and cut into runs of ``run`` rows, the runs shuffled and
    played one after another, so a batch of ``b`` rows holds ~``b / run`` prefixes. Seeded, and another
    order every epoch. ``run`` = the batch size gave one-family batches, which cost the full run's warm-up
    SFT 0.99 → 0.83 (two families learned nothing): a step needs conversations of several families."""

    def __init__(self, groups: Sequence[Sequence[int]], run: int, seed: int) -> None:
        self.groups = [list(g) for g in groups]
        self.run = run
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        self.epoch += 1
        runs: list[list[int]] = []
        for group in self.groups:
            members = group[:]
            rng.shuffle(members)
            runs += [members[i : i + self.run] for i in range(0, len(members), self.run)]
        rng.shuffle(runs)
        return iter([i for run in runs for i in run])


def _heads(input_ids: Any, labels: Any) -> list[tuple[int, ...]]:
    """Each row's tokens before its first labelled one (all of them if none is labelled)."""
    heads = []
    for ids, row_labels in zip(input_ids, labels, strict=True):
        labelled = [i for i, label in enumerate(row_labels) if label != -100]
        heads.append(tuple(ids[: labelled[0] if labelled else len(ids)]))
    return heads


class SharedPrefixSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose batches hold runs of ``prefix_rows`` rows sharing a prefix and whose loss
    forward reads each prefix once."""

    def __init__(self, *args: Any, prefix_rows: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix_rows = prefix_rows

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """TRL's random sampler at ``prefix_rows`` 1 or on several ranks (each would need its share of the
        runs); else runs of rows that share a prefix."""
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        plain = self.prefix_rows == 1 or self.args.world_size > 1
        if plain or dataset is None or "labels" not in dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        groups = shared_prefixes(_heads(dataset["input_ids"], dataset["labels"]))
        return PrefixGroupedSampler([m for _, m in groups], self.prefix_rows, self.args.seed)

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        split = self._split(inputs) if set(inputs) == {"input_ids", "attention_mask", "labels"} else None
        full: Any = super().compute_loss  # untyped in TRL
        if split is None:
            return full(model, inputs, return_outputs, num_items_in_batch)
        from transformers import DynamicCache

        prefix, group_of, rest = split
        cache = DynamicCache()
        model(**prefix, cache=cache, use_cache=True, logits_to_keep=1)
        if group_of.tolist() != list(range(group_of.numel())):
            cache.batch_select_indices(group_of)
        rest["cache"] = cache
        return full(model, rest, return_outputs, num_items_in_batch)

    def _split(self, inputs: Any) -> tuple[dict[str, Any], Any, dict[str, Any]] | None:
        """(one row per prefix, each row's prefix row, each row's rest after the full mask) — None when
        no two rows share a prefix or the batch is not right-padded."""
        import torch

        ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        lengths = mask.sum(-1).tolist()
        if any(mask[i, :n].min() == 0 for i, n in enumerate(lengths) if n):
            return None
        rows = [r[:n] for r, n in zip(ids.tolist(), lengths, strict=True)]
        row_labels = [r[:n] for r, n in zip(labels.tolist(), lengths, strict=True)]
        groups = shared_prefixes(_heads(rows, row_labels))
        if len(groups) == len(rows):
            return None
        layout = prefix_layout(rows, groups, 0)  # any pad id: padding is under mask 0 and label -100
        head, device = layout.head, ids.device
        new_ids = torch.tensor(layout.ids, device=device)
        new_mask = torch.tensor(layout.mask, device=device)
        targets = torch.tensor(prefix_layout(row_labels, groups, -100).ids, device=device)
        positions = (new_mask.cumsum(-1) - 1).clamp(min=0)
        first = torch.tensor(layout.first, device=device)
        prefix = {
            "input_ids": new_ids[first, :head],
            "attention_mask": new_mask[first, :head],
            "position_ids": positions[first, :head],
        }
        rest = {
            "input_ids": new_ids[:, head:],
            "attention_mask": new_mask,
            "position_ids": positions[:, head:],
            "labels": targets[:, head:],
        }
        return prefix, torch.tensor(layout.group_of, device=device), rest
