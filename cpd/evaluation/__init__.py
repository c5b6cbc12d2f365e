"""Evaluators of the prediction files written by the CPD test (`val.json`)."""
