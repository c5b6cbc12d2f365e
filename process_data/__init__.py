"""Data preparation: synthetic dataset, frame/flow extraction, official split parsers, K400 resizing."""
