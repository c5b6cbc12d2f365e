"""The original location of the evaluation script: `cd memdpc/eval && python test.py ...` runs memdpc/test.py.

The default --csv_root is adjusted so that it still points at <repo>/process_data/data from here.
"""

from memdpc.opts import get_eval_args_parser
from memdpc.test import main
from shared_utils.cli import run_cli

if __name__ == "__main__":
    parser = get_eval_args_parser()
    parser.set_defaults(csv_root="../../process_data/data")
    run_cli(main, parser.parse_args())
