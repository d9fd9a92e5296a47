"""Recipes for the official raw formats of the public CTR datasets."""
