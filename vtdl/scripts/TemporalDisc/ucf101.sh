#!/usr/bin/env bash
# The original path scripts/TemporalDisc/ucf101.sh (README spelling: TemporalDisc).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../ucf101.sh" "$@"
