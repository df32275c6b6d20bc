"""Code that runs inside the sandbox, under the bare system interpreter.

Workers run ``/usr/bin/python3`` (readable by the sandbox uids, unlike a pyenv build under ``/root``), so
every module here imports only the standard library (and ``native``'s C library, built with the
package). Keep it that way: a third-party import here stops every worker from starting. Keep it small
too: every module a worker imports makes each of its forks dearer.
"""
