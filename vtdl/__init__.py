"""VTDL / TemporalDis (Wang, Lin, Ma, Yuen, arXiv 2008.02129): temporal discriminative MoCo pretraining with a
same-video temporal negative and TCA, plus fine-tuning, testing and feature extraction. See vtdl/README.md."""
