"""Through the translation, ft tokenizes an Axolotl config's data exactly as Axolotl 0.19 does.

The golden tokens (plugins/data/tests/test_data_fixtures/axolotl_0.19_golden.json.gz) were produced by
Axolotl 0.19.0 itself on real rows with SmolLM2-135M-Instruct's tokenizer (see that test's docstring).
Here each case is written as an Axolotl config file (``datasets: [{path, type, ...options}]``,
``sequence_len``, ``train_on_inputs``), translated as ``--axolotl`` does, composed and validated like
``ft run``, and tokenized by ft's data stage from the composed config.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

GOLDEN = Path(__file__).parents[2] / "data" / "tests" / "test_data_fixtures" / "axolotl_0.19_golden.json.gz"
CASES = json.loads(gzip.open(GOLDEN, "rt").read())["cases"]


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from ft_model.smollm2 import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="module")
def session():
    """The installed plugins, discovered once for every case (``ft run`` discovers them once a command)."""
    from ft.api import Session

    return Session([])


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_translated_config_tokenizes_as_axolotl(name, smollm2, session, tmp_path):
    from transformers import AutoTokenizer

    from ft_axolotl.translate import collect_rules, load_axolotl_file, translate
    from ft_data.api import BUILTIN_FORMATS, prepare_data

    case = CASES[name]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in case["rows"]))
    axolotl = {"base_model": str(smollm2), "sequence_len": case.get("sequence_len", 2048),
               "train_on_inputs": case.get("train_on_inputs", False), "val_set_size": 0,
               "datasets": [{"path": str(rows), "type": case["type"], **case.get("options", {})}],
               "micro_batch_size": 1, "learning_rate": 1e-4}
    file = tmp_path / "axolotl.yml"
    file.write_text(yaml.safe_dump(axolotl))
    translation = translate(load_axolotl_file(str(file)), collect_rules(session.pm_all), str(file))
    assert not translation.unsupported
    prepared = session.prepare(session.normalise([*translation.overrides, "data.shuffle=false"]))
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    data = prepare_data(prepared.cfg.data, tokenizer, BUILTIN_FORMATS, use_cache=False, progress=False)
    ours = [dict(example) for example in data.train]
    assert len(ours) == len(case["expected"])
    for index, (mine, theirs) in enumerate(zip(ours, case["expected"])):
        assert mine["input_ids"] == theirs["input_ids"], f"{name} example {index}: input_ids differ"
        assert mine["labels"] == theirs["labels"], f"{name} example {index}: labels differ"
