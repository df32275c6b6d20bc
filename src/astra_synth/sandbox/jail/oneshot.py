"""One call in a fresh interpreter: the ``SubprocessExecutor`` runs this module once per call.

Reads one request frame on stdin, confines itself with the same ``Jail`` a fork-server child uses
(fork is always denied here, so no grandchild can hold the result pipe), then compiles and runs the
tool and writes its JSON answer to the original stdout; the tool's own stdout and stderr go to /dev/null.
"""

from __future__ import annotations

import os
import sys

from astra_synth.sandbox.jail import protocol
from astra_synth.sandbox.jail.confine import Jail, Policy, scrub_environment
from astra_synth.sandbox.jail.tool import answer, call_tool, compile_tool, describe


def main() -> None:
    request = protocol.read_message(sys.stdin.fileno())
    out = os.dup(sys.stdout.fileno())
    policy = Policy.from_json(request["policy"])
    scrub_environment()
    Jail(policy).enter(request["cpu_seconds"], out)  # 0-2 to /dev/null, every other fd but ``out`` closed
    try:
        code = compile_tool(request["source"])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        data = answer("invalid", error=f"tool does not compile: {describe(exc)}")
    else:
        data = call_tool(code, request["fn"], request["args"], request["seed"], policy.max_output_bytes)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]


if __name__ == "__main__":
    main()
