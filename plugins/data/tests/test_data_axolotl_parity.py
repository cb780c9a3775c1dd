"""ft's formats give Axolotl 0.19's input_ids and labels, token for token, on real rows.

The expected tokens in test_data_fixtures/axolotl_0.19_golden.json.gz were produced by Axolotl 0.19.0
itself (``bench/preprocess/parity.py --golden``, which runs Axolotl's dataset wrapper in its own
virtual environment) on rows of public data sets shipped with ft-testing (ft_testing.TEST_DATA), with SmolLM2-135M-Instruct's tokenizer.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ft_data.api import BUILTIN_FORMATS, FormatOptions, run_format

GOLDEN = Path(__file__).parent / "test_data_fixtures" / "axolotl_0.19_golden.json.gz"
CASES = json.loads(gzip.open(GOLDEN, "rt").read())["cases"]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from ft_model.smollm2 import ensure_smollm2

    return AutoTokenizer.from_pretrained(ensure_smollm2())


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_input_ids_and_labels_as_axolotl(tok, name):
    case = CASES[name]
    options = FormatOptions(sequence_len=case.get("sequence_len", 2048), train_on_inputs=case.get("train_on_inputs", False),
                            **case.get("options", {}))
    results = run_format(BUILTIN_FORMATS[case["format"]], case["rows"], tok, options)
    ours = [e for r in results for e in (r if isinstance(r, list) else [r])]
    assert len(ours) == len(case["expected"])
    for index, (mine, theirs) in enumerate(zip(ours, case["expected"])):
        assert mine["input_ids"] == theirs["input_ids"], f"{name} example {index}: input_ids differ"
        assert mine["labels"] == theirs["labels"], f"{name} example {index}: labels differ"


def test_the_golden_file_covers_every_acceptance_case():
    assert {"alpaca_toolformer", "alpaca_gsm8k_no_input", "sharegpt_mapping", "chat_two_roles", "completion_chunks",
            "input_output", "chat_eos_turn", "chat_eos_all", "chat_eos_last", "chat_eos_none"} <= set(CASES)
