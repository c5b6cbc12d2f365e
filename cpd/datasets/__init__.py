"""Generators of the dataset JSON files CPD reads (Instagram-style caption lists; split JSONs)."""
