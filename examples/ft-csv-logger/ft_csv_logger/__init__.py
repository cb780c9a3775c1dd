"""An example ft plugin written the way an outsider would: ``pip install`` it, then ``+logger=csv``."""
