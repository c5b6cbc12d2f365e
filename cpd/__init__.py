"""CPD: video-text pair discrimination pretraining (Li & Wang, arXiv 2001.05691), re-implemented in modern PyTorch."""
