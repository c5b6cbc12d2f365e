#!/usr/bin/env bash
# The original path scripts/TemporalDis/kinetics.sh (README spelling: TemporalDisc).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../kinetics.sh" "$@"
