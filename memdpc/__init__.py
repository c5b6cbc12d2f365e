"""MemDPC (Han, Xie, Zisserman, ECCV 2020): memory-augmented dense predictive coding for video representations."""
