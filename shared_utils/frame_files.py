"""Frame file naming, torch-free so that process_data's joblib workers can import it cheaply.

Templates are 1-based and either printf style ('image_%05d.jpg') or format style ('image_{:05d}.jpg').
"""

from __future__ import annotations

import os
import re


def frame_name(template: str, number: int) -> str:
    """File name of 1-based frame `number`."""
    return template % number if "%" in template else template.format(number)


def template_regex(template: str) -> re.Pattern:
    """A regex matching the file names of `template`, capturing the number (exactly one number field)."""
    parts = re.split(r"%0?\d*d|\{[^}]*\}", template)
    if len(parts) != 2:
        raise ValueError(f"frame template must contain exactly one number field: {template!r}")
    return re.compile("^" + re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]) + "$")


def count_frames(folder: str, template: str = "image_{:05d}.jpg") -> int:
    """Number of files of `template` in `folder` (0 when the folder is missing)."""
    if not os.path.isdir(folder):
        return 0
    regex = template_regex(template)
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if regex.match(entry.name))
