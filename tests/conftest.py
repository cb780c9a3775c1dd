"""Fixtures come from the ``ft_testing`` pytest plugin (tiny models, real data, ``run_ft``)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
