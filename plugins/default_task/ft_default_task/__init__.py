"""ft-default-task: The embedded default task (data=default_task): generated rows, a before/after score on held-out rows."""
