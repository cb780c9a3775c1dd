"""ft-multipack: sample packing for ft (``packing=multipack``).

Several tokenized rows share each sequence of ``data.sequence_len`` tokens, so batches carry almost no
padding, while every row trains exactly as it would alone (positions restart, attention stays inside
the row, the loss is the mean over the trained tokens of the whole optimizer step).
"""

__version__ = "0.1.0"
