"""BFCL's own CLI with one extra registry entry; run by the BFCL venv's interpreter, never imported by astra.

``bfcl-eval`` lives in a venv of its own (see :mod:`astra_synth.evaluation.bfcl`), so this file imports only
``bfcl_eval`` and the standard library. BFCL's ``gpt-*`` names use the Responses API, so any endpoint that
speaks chat.completions needs its own name mapped to ``OpenAICompletionsHandler`` (native function calling,
``tools=``, ``role: tool`` results). The handler reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` itself;
the name it sends as ``model`` comes from ``ASTRA_BFCL_MODEL``, the registry name (result folder) from
``ASTRA_BFCL_REGISTRY_NAME``.

Two changes to BFCL's requests, both no-ops for a server that follows OpenAI's API, needed by
llama-cpp-python (our embedded server): ``tool_choice="auto"`` is sent with ``tools`` (OpenAI's default;
``chatml-function-calling`` reads a missing one as "none" and drops the tools from the prompt), and
echoed assistant messages carry ``content: ""`` instead of ``null`` and no other ``null`` fields (its
request schema refuses ``null`` there and its chat template needs a ``content``). ``ASTRA_BFCL_MAX_TOKENS``,
when set, caps every response: BFCL sends no cap, and a small model can otherwise write until its
context is full.

Usage: ``<bfcl-venv>/bin/python bfcl_runner.py generate|evaluate [BFCL options]``.
"""

from __future__ import annotations

import os
from typing import Any


def _plain(message: Any) -> Any:
    """An echoed SDK message object as a dict without ``null`` fields; ``content`` is always a string."""
    if not hasattr(message, "model_dump"):
        return message
    plain = message.model_dump(exclude_none=True)
    plain.setdefault("content", "")
    return plain


def main() -> None:
    from bfcl_eval.constants.model_config import (  # type: ignore[import-not-found]
        MODEL_CONFIG_MAPPING,
        ModelConfig,
    )
    from bfcl_eval.model_handler.api_inference.openai_completion import (  # type: ignore[import-not-found]
        OpenAICompletionsHandler,
    )

    class AutoToolChoiceHandler(OpenAICompletionsHandler):  # type: ignore[misc]
        def generate_with_backoff(self, **kwargs: Any) -> Any:
            if kwargs.get("tools"):
                kwargs.setdefault("tool_choice", "auto")
            kwargs["messages"] = [_plain(m) for m in kwargs["messages"]]
            if max_tokens := os.environ.get("ASTRA_BFCL_MAX_TOKENS"):
                kwargs["max_tokens"] = int(max_tokens)
            return super().generate_with_backoff(**kwargs)

    registry_name = os.environ["ASTRA_BFCL_REGISTRY_NAME"]
    MODEL_CONFIG_MAPPING[registry_name] = ModelConfig(
        model_name=os.environ["ASTRA_BFCL_MODEL"],
        display_name=f"{os.environ['ASTRA_BFCL_MODEL']} (astra-synth, FC)",
        url="",
        org="astra-synth",
        license="n/a",
        model_handler=AutoToolChoiceHandler,
        input_price=None,
        output_price=None,
        is_fc_model=True,
        underscore_to_dot=True,
    )
    # Imported after the registry entry exists: the CLI validates model names against the mapping.
    from bfcl_eval.__main__ import cli  # type: ignore[import-not-found]

    cli()


if __name__ == "__main__":
    main()
