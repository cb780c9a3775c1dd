"""Set before any test module imports Triton: without a GPU, Triton kernels run in Triton's CPU interpreter.

Triton reads ``TRITON_INTERPRET`` once (its knobs), at its first import, and decides at decoration time
whether a ``@triton.jit`` function is interpreted; a test module importing a library that imports Triton
(cut-cross-entropy, liger-kernel) would otherwise fix it to "off" for the whole session.
"""

import os
import shutil

if shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
