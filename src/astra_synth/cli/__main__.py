"""``python -m astra_synth.cli``: the ``astra`` command without its console script."""

from astra_synth.cli.root import main

main()
