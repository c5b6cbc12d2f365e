#!/usr/bin/env bash
# The original path scripts/TemporalDisc/hmdb51.sh (README spelling: TemporalDisc).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../hmdb51.sh" "$@"
