"""``python -m ft`` (what ``torchrun -m ft run ...`` starts): the ``ft`` command."""

from ft.cli import entry

entry()
