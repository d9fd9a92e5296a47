"""Training: the one trainer, its callbacks, metrics, and run directories."""
