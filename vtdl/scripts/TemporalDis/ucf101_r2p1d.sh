#!/usr/bin/env bash
# The original scripts/TemporalDis/ucf101_r2p1d.sh: ucf101.sh with --arch r2p1d.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../ucf101.sh" --arch r2p1d "$@"
