"""Optical flow for the MemDPC two-stream input (memdpc spec §2.2): TV-L1 when this OpenCV has it, else Farneback.

Flow between consecutive grayscale frames is clipped to +-20 px and mapped to uint8 by (f+20)*255/40; the array
handed to cv2.imwrite has ch0 = horizontal, ch1 = vertical, ch2 = 128 (so a PIL RGB load gives R = 128,
G = vertical, B = horizontal).
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_BOUND = 20.0  # px; flow is clipped to +-FLOW_BOUND before the uint8 mapping


def flow_algorithm() -> str:
    """'tvl1' when this OpenCV build has DualTVL1 (contrib), else 'farneback'."""
    if hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create"):
        return "tvl1"
    if hasattr(cv2, "DualTVL1OpticalFlow_create"):
        return "tvl1"
    return "farneback"


def flow_function(algorithm: str):
    """calc(prev_gray, next_gray) -> float32 [H, W, 2] flow (dx, dy) for 'tvl1' or 'farneback'."""
    if algorithm == "tvl1":
        create = getattr(getattr(cv2, "optflow", cv2), "DualTVL1OpticalFlow_create", None)
        create = create or cv2.DualTVL1OpticalFlow_create
        tvl1 = create()  # default parameters, as the MemDPC/CoCLR extraction
        return lambda prev, nxt: tvl1.calc(prev, nxt, None)
    return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """float [H, W, 2] (dx, dy) -> uint8 [H, W, 3]: ch0 = dx, ch1 = dy mapped by (f+20)*255/40, ch2 = 128."""
    mapped = np.round((np.clip(flow, -FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * (255.0 / (2 * FLOW_BOUND)))
    image = np.full((*flow.shape[:2], 3), 128, np.uint8)
    image[..., :2] = mapped.astype(np.uint8)
    return image


def image_to_flow(image: np.ndarray) -> np.ndarray:
    """Inverse of flow_to_image for an array read with cv2.imread (BGR order = the array that was written)."""
    return image[..., :2].astype(np.float32) * (2 * FLOW_BOUND / 255.0) - FLOW_BOUND
