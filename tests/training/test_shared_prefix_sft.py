"""SFT reading shared prefixes once: the same loss and gradients as TRL's full forward, and batches drawn
one prefix group at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astra_synth.arenas.golden import golden_example
from astra_synth.arenas.records import Arena
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.sft import to_trl_row
from astra_synth.training.shared_prefix_sft import PrefixGroupedSampler


def test_batches_hold_runs_of_rows_that_share_a_prefix() -> None:
    groups = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12]]
    sampler = PrefixGroupedSampler(groups, run=2, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(13)) and sorted(second) == list(range(13))
    assert first != second  # another order every epoch
    assert list(PrefixGroupedSampler(groups, 2, seed=0)) == first  # seeded
    runs, at = [], 0
    while at < len(first):  # cut the order where the group changes or a run is full
        group = next(g for g in groups if first[at] in g)
        run = [first[at]]
        while len(run) < 2 and at + len(run) < len(first) and first[at + len(run)] in group:
            run.append(first[at + len(run)])
        runs.append(run)
        at += len(run)
    assert sorted(len(r) for r in runs) == [1, 2, 2, 2, 2, 2, 2]  # 3 + 2 + 1.5 runs; 12's run is alone
    batch_groups = {frozenset(next(k for k, g in enumerate(groups) if i in g) for i in first[s : s + 4])
                    for s in (0, 4, 8)}  # fmt: skip
    assert any(len(g) > 1 for g in batch_groups)  # batches mix families


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_shared_prefix_loss_and_gradients_equal_the_full_forward(
    embedded_model: Path,
    family_arenas: list[Arena],
    sample_arenas: list[Arena],
    executor: ToolExecutor,
    tmp_path: Path,
) -> None:
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    from astra_synth.training.models import load_tokenizer
    from astra_synth.training.shared_prefix_sft import SharedPrefixSFTTrainer

    arenas = [*family_arenas, sample_arenas[0]]  # two of one family, one of another: a singleton too
    rows = [to_trl_row(json.loads(golden_example(a, executor).model_dump_json())) for a in arenas]
    tokenizer = load_tokenizer(str(embedded_model))
    args = SFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=3, assistant_only_loss=True,
        max_length=1536, report_to=[], use_cpu=True, bf16=False,
    )  # fmt: skip
    results = []
    for trainer_class in (SFTTrainer, SharedPrefixSFTTrainer):
        trainer = trainer_class(
            model=str(embedded_model),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
        model = trainer.model
        split = trainer._split(batch) if isinstance(trainer, SharedPrefixSFTTrainer) else None
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=(batch["labels"] != -100).sum())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss), grads, split))
    (full_loss, full_grads, _), (shared_loss, shared_grads, split) = results
    trainer.prefix_rows = 2  # the sampler finds the pair in the tokenized dataset
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, PrefixGroupedSampler) and sorted(map(sorted, sampler.groups)) == [[0, 1], [2]]
    assert split is not None  # the family pair shares its prefix: the split path ran
    prefix, group_of, rest = split
    assert prefix["input_ids"].shape[0] == 2 and group_of.tolist().count(group_of[0].item()) == 2
    assert rest["input_ids"].shape[1] < 0.5 * batch["input_ids"].shape[1]  # most tokens are in the prefix
    assert shared_loss == pytest.approx(full_loss, rel=1e-5)
    assert full_grads.keys() == shared_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(shared_grads[name], grad, rtol=1e-3, atol=1e-5), name
