"""ft-scaffold: ft new-plugin: write a complete plugin distribution to start from."""
