"""Code that runs inside the sandbox, under the bare system interpreter.

Workers run ``/usr/bin/python3`` (readable by the sandbox uids, unlike a pyenv build under ``/root``), so
every module here imports only the standard library; ``pyseccomp`` is loaded from its single file by
path. Keep it that way: a third-party import here stops every worker from starting.
"""
