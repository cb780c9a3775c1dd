"""ft-data: The data stage: local and hub sources, formats with exact label masks, a content-keyed cache, ft preprocess."""
