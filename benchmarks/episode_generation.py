"""Episode generation speed: this checkout's generator vs an earlier revision's, same run, same arenas.

    .venv/bin/python benchmarks/episode_generation.py [--baseline REV] [--families 8] [--per-family 4]

The baseline is ``git archive REV src`` unpacked into a temporary folder and imported instead of this
checkout's ``src`` (default: 59fe3d5, the generator before cascade attention, which copied each shared
prompt prefix into every row's cache; d425cee is the one before shared prefixes and the in-place cache).
Each side runs in its own process: greedy episodes as the learning-signal evaluation plays them (arenas of a
few families, several instances each) and sampled GRPO-like rolls (groups of 8 rollouts of one arena), with
the embedded model or ``--model`` (e.g. an SFT policy, whose episodes call tools over several turns).
Greedy tokens agree except where bfloat16 rounding differs between the two ways of computing attention
(fp32 equality with a plain ``generate`` is a unit test). Machines are shared and noisy: compare the ratio,
not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "examples" / "families"


@dataclass
class Side:
    greedy_s: float
    sampled_s: float
    greedy_tokens: list[list[int]]  # per greedy episode
    sampled_tokens: int  # in all sampled rollouts


def measure(args: argparse.Namespace) -> Side:
    """Time one generator (whichever ``astra_synth`` this process imports)."""
    import torch
    from transformers import AutoModelForCausalLM

    from astra_synth.arenas.families import instantiate, load_families
    from astra_synth.arenas.runtime import ArenaEnv
    from astra_synth.experiments.learning_signal import play_greedy
    from astra_synth.sandbox import get_executor
    from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner
    from astra_synth.training.models import cpu_autocast, load_tokenizer, resolve_model

    episode = EpisodeConfig(max_turns=3, max_new_tokens=96, max_completion_tokens=384, temperature=0.0)
    model_path = resolve_model(args.model)
    with get_executor() as executor:
        families = load_families([FAMILIES])
        step = max(len(families) // args.families, 1)
        arenas = instantiate(families[::step][: args.families], args.per_family, 0, executor)
        began = time.perf_counter()
        played = play_greedy(model_path, arenas, executor, episode, args.batch)
        greedy_s = time.perf_counter() - began
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        tokenizer = load_tokenizer(model_path)
        tokenizer.padding_side = "left"
        runner = EpisodeRunner(
            tokenizer, episode.model_copy(update={"temperature": 0.7}), bf16=cpu_autocast("auto")
        )
        rolls = [a for a in arenas[:: args.per_family][: args.groups] for _ in range(8)]
        torch.manual_seed(0)
        began = time.perf_counter()
        sampled = runner.play(model, [(ArenaEnv(a, executor), None) for a in rolls])
        sampled_s = time.perf_counter() - began
    tokens = [e.completion_ids for e in played]
    return Side(greedy_s, sampled_s, tokens, sum(len(e.completion_ids) for e in sampled))


def run_side(args: argparse.Namespace, src: Path, out: Path) -> Side:
    """:func:`measure` in a fresh process importing ``astra_synth`` from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--measure", str(out), *_sizes(args)]
    subprocess.run(command, env=env, check=True)
    return Side(**json.loads(out.read_text()))


def _sizes(args: argparse.Namespace) -> list[str]:
    names = ("families", "per_family", "batch", "groups", "model")
    return [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in names]


def _unpack(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (ROOT / "src").rglob("*.so"):  # compiled helpers (the sandbox's) are not in git
        target = into / built.relative_to(ROOT)
        if not target.exists():
            shutil.copy2(built, target)
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="59fe3d5", help="Git revision whose generator is the baseline.")
    parser.add_argument("--families", type=int, default=8, help="Families the greedy episodes come from.")
    parser.add_argument("--per-family", type=int, default=4, help="Instances of each.")
    parser.add_argument("--batch", type=int, default=16, help="Greedy episodes generated together.")
    parser.add_argument("--groups", type=int, default=4, help="Sampled groups of 8.")
    parser.add_argument("--model", default="embedded", help="Policy (e.g. an SFT output folder).")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # one side, in a subprocess
    args = parser.parse_args()
    if args.measure:
        args.measure.write_text(json.dumps(asdict(measure(args))))
        return
    print(f"load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            f"baseline {args.baseline}": run_side(
                args, _unpack(args.baseline, Path(tmp)), Path(tmp) / "a.json"
            ),
            "this checkout": run_side(args, ROOT / "src", Path(tmp) / "b.json"),
        }
    for name, side in sides.items():
        print(
            f"{name:>18}: greedy {len(side.greedy_tokens)} episodes {side.greedy_s:6.1f} s,"
            f" sampled {args.groups * 8} rollouts {side.sampled_s:6.1f} s ({side.sampled_tokens} tokens)"
        )
    before, now = sides.values()
    same = sum(a == b for a, b in zip(before.greedy_tokens, now.greedy_tokens, strict=True))
    print(
        f"RESULT greedy_speedup={before.greedy_s / now.greedy_s:.2f}x"
        f" sampled_speedup={before.sampled_s / now.sampled_s:.2f}x"
        f" same_greedy_episodes={same}/{len(now.greedy_tokens)}"
    )


if __name__ == "__main__":
    main()
