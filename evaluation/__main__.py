from evaluation.evaluate import main
from shared_utils.cli import run_cli

run_cli(main)
