"""The data schema (what `ft validate` accepts) and the formats' runtime options stay in step."""

import dataclasses

from ft_data.formats import FormatOptions
from ft_data.schema import DataConfig, DatasetConfig


def test_every_format_option_is_a_validated_key_of_data_and_of_each_dataset():
    options = {f.name for f in dataclasses.fields(FormatOptions)}
    run_wide = {"sequence_len"}  # one length for the whole run: data.sequence_len only
    for schema, expected in ((DataConfig, options), (DatasetConfig, options - run_wide)):
        missing = expected - {f.name for f in dataclasses.fields(schema)}
        assert not missing, f"{schema.__name__} does not validate format options {sorted(missing)}"
