"""VideoMoCo (Pan et al., CVPR 2021): MoCo with a temporally adversarial frame-dropping generator and temporal
decay of queue keys. Entry points: `python videomoco/train.py` (pretraining) and `python videomoco/eval.py`
(fine-tuning + 10-clip test)."""
