"""The original location of the evaluation script: `cd memdpc/eval && python test.py ...` runs memdpc/test.py.
(the default --csv_root, <repo>/data/lists, does not depend on the current directory).
"""

from memdpc.opts import get_eval_args_parser
from memdpc.test import main
from shared_utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main, get_eval_args_parser().parse_args())
