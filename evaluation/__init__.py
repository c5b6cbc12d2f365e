"""The unified evaluation (one protocol for the four methods): `python -m evaluation --method M --ckpt ...`.

It sits above the method packages (it builds their encoders through `evaluation.registry`), so the shared floor,
`shared_utils`, imports no method.
"""
