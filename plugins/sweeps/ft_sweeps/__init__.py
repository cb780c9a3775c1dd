"""ft-sweeps: ``ft run -m``, the sweep runner and its summary."""
