"""``python -m pakman.cli``: the ``pakman`` command."""

from pakman.cli import run

run()
