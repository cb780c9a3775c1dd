"""ft-axolotl: Axolotl config files as ft input (``ft run --axolotl FILE``)."""
