"""Analysis: results tables, learning-curve plots and collapse diagnostics."""
