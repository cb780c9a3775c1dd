"""``python -m ft`` (what ``torchrun -m ft run ...`` starts): the ``ft`` command."""

import sys

from ft.cli import main

sys.exit(main())
