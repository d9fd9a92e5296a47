"""Data: schemas, preparation of raw logs, recipes per raw format, synthetic data and loaders."""
