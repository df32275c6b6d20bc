"""astra-synth: tool-use trajectories and verifiable RL arenas for LLM agents.

The public Python API (``docs/python_api.md``). Names load on first use, so ``import astra_synth`` stays
cheap (the CLI, sandbox workers and the embedded server import submodules without paying for torch or
the pipelines)::

    import astra_synth as astra

    arenas = astra.read_arenas(path)                        # the arena record (pipeline B's output)
    env = astra.ArenaEnv(arenas[0], astra.get_executor())   # reset / step / reward in your own loop
    breakdown = env.reward(final_answer)                    # the ASTRA F1 trajectory reward
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name → defining module. Grouped as in docs/python_api.md.
_EXPORTS: dict[str, str] = {
    # arenas: the record, the environment and its reward
    "Arena": "astra_synth.arenas.records",
    "read_arenas": "astra_synth.arenas.records",
    "ArenaEnv": "astra_synth.arenas.runtime",
    "EnvConfig": "astra_synth.arenas.runtime",
    "f1_reward": "astra_synth.arenas.reward",
    "RewardConfig": "astra_synth.arenas.reward",
    "RewardBreakdown": "astra_synth.arenas.reward",
    "get_executor": "astra_synth.sandbox",
    # arenas as a service: the OpenEnv server and our client of it
    "ArenaServer": "astra_synth.arenas.server",
    "ArenaServerConfig": "astra_synth.arenas.server",
    "ArenaCorpus": "astra_synth.arenas.server",
    "serve_arenas": "astra_synth.arenas.server",
    "RemoteArenaEnv": "astra_synth.arenas.remote",
    # arenas as SFT data: golden conversations, and recovery ones (a mistaken call, its error, the fix)
    "golden_example": "astra_synth.arenas.golden",
    "recovery_example": "astra_synth.arenas.golden",
    "SFTExample": "astra_synth.arenas.golden",
    # arenas in TRL's own GRPO loop (environment_factory)
    "trl_environments": "astra_synth.training.trl_env",
    "trl_rows": "astra_synth.training.trl_env",
    # arenas as a verifiers taskset (tools on the arena server)
    "export_verifiers": "astra_synth.export.verifiers",
    "vf_eval": "astra_synth.export.verifiers",
    # arenas in verl (parquet rows, our agent loop, the reward hook)
    "export_verl": "astra_synth.export.verl",
    # the episode core
    "run_agent": "astra_synth.agent.loop",
    "AgentConfig": "astra_synth.agent.loop",
    "Episode": "astra_synth.agent.loop",
    "ToolReply": "astra_synth.agent.loop",
    "ToolCall": "astra_synth.agent.chat",
    "Message": "astra_synth.agent.chat",
    "parse_openai_calls": "astra_synth.agent.chat",
    "parse_hermes_calls": "astra_synth.agent.chat",
    # the two pipelines
    "run_arenas": "astra_synth.arenas.pipeline",
    "ArenasConfig": "astra_synth.arenas.pipeline",
    "run_trajectories": "astra_synth.trajectories.pipeline",
    "TrajectoriesConfig": "astra_synth.trajectories.pipeline",
    "RunSummary": "astra_synth.runs.summary",
    "publish": "astra_synth.export.publish",
    # evaluation
    "evaluate_arenas": "astra_synth.evaluation.arenas",
    "ArenaEvalConfig": "astra_synth.evaluation.arenas",
    "evaluate_all": "astra_synth.evaluation.suite",
    "SuiteConfig": "astra_synth.evaluation.suite",
    "ErrorPolicy": "astra_synth.evaluation.endpoint_errors",
    "check_endpoint": "astra_synth.llm.preflight",
    "EndpointUnavailable": "astra_synth.llm.preflight",
    # extending: your own stages and pipelines
    "Pipeline": "astra_synth.runs.pipeline",
    "Stage": "astra_synth.runs.stage",
    "StageContext": "astra_synth.runs.stage",
    "Rejected": "astra_synth.runs.stage",
    # experiments: the whole stack measured
    "run_learning_signal": "astra_synth.experiments.learning_signal",
    "LearningSignalConfig": "astra_synth.experiments.learning_signal",
    # models
    "LLMClient": "astra_synth.llm.client",
    "EndpointConfig": "astra_synth.config",
    "RunSession": "astra_synth.runs.session",
    "serving": "astra_synth.training.serve",
    "ServeConfig": "astra_synth.training.serve",
}

__all__ = [
    "AgentConfig",
    "Arena",
    "ArenaCorpus",
    "ArenaEnv",
    "ArenaEvalConfig",
    "ArenaServer",
    "ArenaServerConfig",
    "ArenasConfig",
    "EndpointConfig",
    "EndpointUnavailable",
    "EnvConfig",
    "Episode",
    "ErrorPolicy",
    "LLMClient",
    "LearningSignalConfig",
    "Message",
    "Pipeline",
    "Rejected",
    "RemoteArenaEnv",
    "RewardBreakdown",
    "RewardConfig",
    "RunSession",
    "RunSummary",
    "SFTExample",
    "ServeConfig",
    "Stage",
    "StageContext",
    "SuiteConfig",
    "ToolCall",
    "ToolReply",
    "TrajectoriesConfig",
    "__version__",
    "check_endpoint",
    "evaluate_all",
    "evaluate_arenas",
    "export_verifiers",
    "export_verl",
    "f1_reward",
    "get_executor",
    "golden_example",
    "parse_hermes_calls",
    "parse_openai_calls",
    "publish",
    "read_arenas",
    "recovery_example",
    "run_agent",
    "run_arenas",
    "run_learning_signal",
    "run_trajectories",
    "serve_arenas",
    "serving",
    "trl_environments",
    "trl_rows",
    "vf_eval",
]

if TYPE_CHECKING:
    from astra_synth.agent.chat import Message, ToolCall, parse_hermes_calls, parse_openai_calls
    from astra_synth.agent.loop import AgentConfig, Episode, ToolReply, run_agent
    from astra_synth.arenas.golden import SFTExample, golden_example, recovery_example
    from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
    from astra_synth.arenas.records import Arena, read_arenas
    from astra_synth.arenas.remote import RemoteArenaEnv
    from astra_synth.arenas.reward import RewardBreakdown, RewardConfig, f1_reward
    from astra_synth.arenas.runtime import ArenaEnv, EnvConfig
    from astra_synth.arenas.server import ArenaCorpus, ArenaServer, ArenaServerConfig, serve_arenas
    from astra_synth.config import EndpointConfig
    from astra_synth.evaluation.arenas import ArenaEvalConfig, evaluate_arenas
    from astra_synth.evaluation.endpoint_errors import ErrorPolicy
    from astra_synth.evaluation.suite import SuiteConfig, evaluate_all
    from astra_synth.experiments.learning_signal import LearningSignalConfig, run_learning_signal
    from astra_synth.export.publish import publish
    from astra_synth.export.verifiers import export_verifiers, vf_eval
    from astra_synth.export.verl import export_verl
    from astra_synth.llm.client import LLMClient
    from astra_synth.llm.preflight import EndpointUnavailable, check_endpoint
    from astra_synth.runs.pipeline import Pipeline
    from astra_synth.runs.session import RunSession
    from astra_synth.runs.stage import Rejected, Stage, StageContext
    from astra_synth.runs.summary import RunSummary
    from astra_synth.sandbox import get_executor
    from astra_synth.training.serve import ServeConfig, serving
    from astra_synth.training.trl_env import trl_environments, trl_rows
    from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'astra_synth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
