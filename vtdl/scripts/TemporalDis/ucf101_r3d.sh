#!/usr/bin/env bash
# The original scripts/TemporalDis/ucf101_r3d.sh: ucf101.sh with --arch r3d.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../ucf101.sh" --arch r3d "$@"
