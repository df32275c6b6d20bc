"""An exported arena row through verl's own rollout path with a scripted generation backend; verl venv only.

``python -m astra_synth.testing.verl_rollout EXPORT_DIR ARENAS MODEL [--index N] [--scripts F]``, run by the
verl venv's interpreter (:func:`astra_synth.export.verl.ensure_verl_venv`) while an arena server serves the
exported ``ARENAS`` file at the URL the export wrote. It is verl's trainer minus the model and Ray: verl's
``ppo_trainer`` config composed with the exported overrides (hydra: every key must exist; ``MODEL`` is the
model path, for its tokenizer and config), the dataset class it names (``RLHFDataset``) over the train
parquet, verl's collate function, and verl's ``AgentLoopWorker.generate_sequences``, which loads the
exported agent-loop registry, instantiates our loop and scores each episode through verl's
``RewardLoopWorker`` (the reward manager calling the ``compute_score`` the config names) into
``rm_scores``. Ray actors are replaced by the objects themselves, and the inference server by
:class:`ScriptedBackend`, which answers each turn with the next text of a script (default: the row's
arena's golden turns, ``golden_texts``; ``--scripts`` gives episodes of one's own, a JSON list of lists).
It prints one JSON line: the dataset size, the row's keys, and per episode what verl's batch holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from astra_synth.arenas.records import read_arenas
from astra_synth.export.verl import OVERRIDES_FILE
from astra_synth.testing.policy import golden_texts


class ScriptedBackend:
    """verl's ``LLMServerClient.generate`` surface: each call returns the next of ``turns`` (token ids)."""

    def __init__(self) -> None:
        self.turns: list[list[int]] = []
        self.prompts: list[list[int]] = []

    async def generate(
        self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any], **_: Any
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput  # type: ignore[import-not-found]

        self.prompts.append(list(prompt_ids))
        return TokenOutput(token_ids=self.turns.pop(0), stop_reason="completed")


class InProcessActor:
    """A Ray actor handle's surface (``handle.method.remote(...)``) over a plain object in this process."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return SimpleNamespace(remote=getattr(self._target, name))


def trainer_config(export_dir: Path, model: str) -> Any:
    """verl's own ``ppo_trainer`` config composed with the exported overrides, as ``main_ppo`` composes it."""
    import verl  # type: ignore[import-not-found]
    from hydra import compose, initialize_config_dir  # type: ignore[import-not-found]

    overrides = (export_dir / OVERRIDES_FILE).read_text(encoding="utf-8").split()
    ours = [
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.rollout.name=vllm",  # required by the schema; nothing here imports vLLM
        "data.max_prompt_length=4096",
        "actor_rollout_ref.rollout.response_length=2048",
    ]
    folder = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(folder), version_base=None):
        return compose("ppo_trainer", overrides=[*overrides, *ours])


async def play(
    export_dir: Path, arenas_file: Path, model: str, index: int = 0, scripts: list[list[str]] | None = None
) -> dict[str, Any]:
    """Row ``index`` played once per script, each as a batch of one through ``generate_sequences``."""
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker  # type: ignore[import-not-found]
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker  # type: ignore[import-not-found]
    from verl.protocol import DataProto  # type: ignore[import-not-found]
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class  # type: ignore[import-not-found]

    config = trainer_config(export_dir, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    dataset = get_dataset_class(config.data)(config.data.train_files, tokenizer, config.data)
    row = dataset[index]
    if scripts is None:
        (arena,) = [a for a in read_arenas(arenas_file) if a.id == row["extra_info"]["arena_id"]]
        scripts = [golden_texts(arena)]
    backend = ScriptedBackend()
    rewards = InProcessActor(RewardLoopWorker(config))
    worker = AgentLoopWorker(config, llm_client=backend, reward_loop_worker_handles=[rewards])
    episodes = []
    for texts in scripts:
        backend.turns = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        batch = await worker.generate_sequences(DataProto.from_single_dict(collate_fn([dataset[index]])))
        mask = batch.batch["response_mask"][0]
        width = batch.batch["prompts"].shape[1]
        response = batch.batch["input_ids"][0, width:][batch.batch["attention_mask"][0, width:].bool()]
        extra = {k: batch.non_tensor_batch[k][0].item() for k in batch.meta_info["reward_extra_keys"]}
        episodes.append(
            {
                "rm_score": batch.batch["rm_scores"][0].sum().item(),
                "reward_extra_info": extra,
                "calls": batch.non_tensor_batch["astra_reward"][0]["calls"],
                "turns_left": len(backend.turns),
                "model_tokens": int(mask.sum()),
                "tool_tokens": len(response) - int(mask.sum()),
                "response_text": tokenizer.decode(response, skip_special_tokens=True),
            }
        )
    return {"rows": len(dataset), "row_keys": sorted(row), "episodes": episodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("arenas_file", type=Path)
    parser.add_argument("model", help="Model folder (its tokenizer and config are read, not its weights).")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--scripts", type=Path, help="JSON: episodes, each a list of assistant texts.")
    args = parser.parse_args()
    scripts = json.loads(args.scripts.read_text(encoding="utf-8")) if args.scripts else None
    print(json.dumps(asyncio.run(play(args.export_dir, args.arenas_file, args.model, args.index, scripts))))


if __name__ == "__main__":
    main()
