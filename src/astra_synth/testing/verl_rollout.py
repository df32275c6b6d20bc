"""Play an exported arena row through verl's own classes with a scripted generation backend; verl venv only.

``python -m astra_synth.testing.verl_rollout EXPORT_DIR ARENAS_FILE TOKENIZER [--index N] [--scripts F]``,
run by the verl venv's interpreter (:func:`astra_synth.export.verl.ensure_verl_venv`) with an arena server
serving ``ARENAS_FILE`` at the URL the export wrote. It does what verl's trainer does with the export, bar
the model and Ray: composes verl's ``ppo_trainer`` config with the exported overrides (hydra: every key must
exist), loads the train parquet with the dataset class that config names (``RLHFDataset``), instantiates
the agent loop from the exported registry file as verl's ``AgentLoopWorker`` does, plays row ``N`` with a
backend that answers each turn with the next text of a script (default: the arena's golden turns,
``golden_texts``; ``--scripts`` gives episodes of one's own), and scores each episode with the reward
function the config names, loaded by verl's ``get_custom_reward_fn`` and called as verl's
``NaiveRewardManager`` calls it. It prints one JSON line: the dataset size, the row's keys, and per episode
the reward, the calls and the token counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from astra_synth.arenas.records import read_arenas
from astra_synth.export.verl import OVERRIDES_FILE
from astra_synth.testing.policy import golden_texts


class ScriptedBackend:
    """verl's ``LLMServerClient.generate`` surface: each call returns the next scripted turn's token ids."""

    def __init__(self, turns: list[list[int]]) -> None:
        self.turns = list(turns)
        self.prompts: list[list[int]] = []

    async def generate(
        self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any], **_: Any
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput  # type: ignore[import-not-found]

        self.prompts.append(list(prompt_ids))
        return TokenOutput(token_ids=self.turns.pop(0), stop_reason="completed")


def trainer_config(export_dir: Path) -> Any:
    """verl's own ``ppo_trainer`` config composed (hydra) with the exported overrides, as ``main_ppo`` would:
    every override must name a key verl has."""
    import verl  # type: ignore[import-not-found]
    from hydra import compose, initialize_config_dir  # type: ignore[import-not-found]

    overrides = (export_dir / OVERRIDES_FILE).read_text(encoding="utf-8").split()
    sizes = ["data.max_prompt_length=4096", "actor_rollout_ref.rollout.response_length=2048"]
    with initialize_config_dir(
        config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None
    ):
        return compose("ppo_trainer", overrides=[*overrides, *sizes])


async def play(
    export_dir: Path,
    arenas_file: Path,
    tokenizer_path: str,
    index: int,
    scripts: list[list[str]] | None = None,
) -> dict[str, Any]:
    """Row ``index`` played once per script (the assistant texts of one episode; default: the golden one)."""
    import hydra
    from omegaconf import OmegaConf  # type: ignore[import-not-found]
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import (  # type: ignore[import-not-found]
        DictConfigWrap,
        ToolListWrap,
    )
    from verl.trainer.ppo.reward import get_custom_reward_fn  # type: ignore[import-not-found]
    from verl.utils.dataset.rl_dataset import get_dataset_class  # type: ignore[import-not-found]

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = trainer_config(export_dir)
    dataset_cls = get_dataset_class(config.data)
    dataset = dataset_cls(data_files=config.data.train_files, tokenizer=tokenizer, config=config.data)
    row = dict(dataset[index])
    registry = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)
    (entry,) = [e for e in registry if e.name == row["agent_name"]]
    compute_score = get_custom_reward_fn(config)
    episodes = []
    for texts in scripts or [golden_texts(read_arenas(arenas_file)[index])]:
        backend = ScriptedBackend([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts])
        loop = hydra.utils.instantiate(
            config=entry,
            trainer_config=DictConfigWrap(config=config),
            server_manager=backend,
            tokenizer=tokenizer,
            processor=None,
            hf_model_type=None,
            dataset_cls=dataset_cls,
            data_config=DictConfigWrap(config.data),
            tools=ToolListWrap([]),
        )
        output = await loop.run({"temperature": 1.0}, **{k: v for k, v in row.items() if k != "agent_name"})
        extra_info = {**row["extra_info"], **output.extra_fields}  # what verl's NaiveRewardManager passes
        score = compute_score(
            data_source=row["data_source"],
            solution_str=tokenizer.decode(output.response_ids, skip_special_tokens=True),
            ground_truth=row["reward_model"]["ground_truth"],
            extra_info=extra_info,
        )
        episodes.append(
            {
                "score": score,
                "calls": output.extra_fields["astra_reward"]["calls"],
                "turns_left": len(backend.turns),
                "model_tokens": sum(output.response_mask),
                "tool_tokens": len(output.response_mask) - sum(output.response_mask),
                "response_text": tokenizer.decode(output.response_ids, skip_special_tokens=False),
            }
        )
    return {"rows": len(dataset), "row_keys": sorted(row), "episodes": episodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("arenas_file", type=Path)
    parser.add_argument("tokenizer")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument(
        "--scripts", type=Path, help="JSON: a list of episodes, each a list of assistant texts."
    )
    args = parser.parse_args()
    scripts = json.loads(args.scripts.read_text(encoding="utf-8")) if args.scripts else None
    played = asyncio.run(play(args.export_dir, args.arenas_file, args.tokenizer, args.index, scripts))
    print(json.dumps(played))


if __name__ == "__main__":
    main()
