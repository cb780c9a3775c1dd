"""ft-reliability: Lose no work: graceful stop on SIGTERM/SIGINT/SIGUSR1, periodic crash-safe checkpoints, ft resume."""
