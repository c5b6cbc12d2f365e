"""House rules checked on the source (AST): `args` holds what the user typed, and no function outgrows a screen."""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("memdpc", "vtdl", "videomoco", "cpd")
PACKAGES = (*METHODS, "shared_utils", "evaluation")
NAMESPACES = {"args", "opt"}  # the parsed flags, under both of the originals' names
MAX_LINES = 60


def sources(folders) -> list[str]:
    paths = []
    for folder in folders:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            paths += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(paths)


def parse(path: str) -> ast.Module:
    with open(path) as handle:
        return ast.parse(handle.read(), path)


def is_flags(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in NAMESPACES


def flag_writes(tree: ast.Module) -> list[tuple[int, str]]:
    """Every place that stores into the parsed flags: `args.x = ...` (also augmented, annotated or in a tuple),
    `del args.x`, `setattr(args, ...)`, `vars(args)[...] = ...`, `args.__dict__...` and `vars(args).update(...)`."""
    found = []

    def targets(node):
        if isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                yield from targets(elt)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)
        else:
            yield node

    for node in ast.walk(tree):
        stores = []
        if isinstance(node, ast.Assign):
            stores = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            stores = [node.target]
        elif isinstance(node, ast.Delete):
            stores = node.targets
        for target in stores:
            if isinstance(target, ast.Attribute) and is_flags(target.value):
                found.append((target.lineno, f"{target.value.id}.{target.attr}"))
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Call):
                call = target.value
                if isinstance(call.func, ast.Name) and call.func.id == "vars" and call.args and is_flags(call.args[0]):
                    found.append((target.lineno, "vars(args)[...]"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            if node.args and is_flags(node.args[0]):
                found.append((node.lineno, "setattr(args, ...)"))
        if isinstance(node, ast.Attribute) and node.attr == "__dict__" and is_flags(node.value):
            found.append((node.lineno, "args.__dict__"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update":
            inner = node.func.value
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "vars":
                if inner.args and is_flags(inner.args[0]):
                    found.append((node.lineno, "vars(args).update"))
    return found


def test_flag_writes_are_caught_by_the_scan():
    code = (
        "args.device = 1\nopt.a, (opt.b, x) = 1, (2, 3)\nargs.n += 1\nsetattr(args, 'k', 2)\n"
        "vars(args)['k'] = 3\nargs.__dict__.pop('k')\nvars(args).update(k=4)\ndel args.k\n"
        "other.device = 1\nx = args.device\nctx = replace(ctx, rank=1)\n"
    )
    assert sorted(line for line, _ in flag_writes(ast.parse(code))) == [1, 2, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("path", sources(PACKAGES), ids=lambda p: os.path.relpath(p, REPO))
def test_no_code_writes_into_the_parsed_flags(path):
    """Run-time state (device, ranks, steps, derived sizes) lives in the run context or in local values; only the
    argument parsers (opts.py) shape `args`."""
    if os.path.basename(path) == "opts.py":
        return
    writes = flag_writes(parse(path))
    assert not writes, f"{os.path.relpath(path, REPO)} writes into the flags: {writes}"


def is_parser_definition(func: ast.FunctionDef) -> bool:
    """A function whose body builds argparse parsers: (almost) every statement is an add_argument-style call
    (`parser.add_argument(...)`, or through an alias such as `add = parser.add_argument`)."""
    builders = {"add_argument", "add_argument_group", "add_mutually_exclusive_group"}
    aliases = {
        target.id
        for node in ast.walk(func)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute) and node.value.attr in builders
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    calls = 0
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            calls += node.func.attr in builders
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls += node.func.id in aliases
    statements = sum(1 for node in ast.walk(func) if isinstance(node, ast.stmt)) - 1
    return calls > 0 and calls >= statements / 2


def long_functions(paths, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    out = []
    for path in paths:
        for node in ast.walk(parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit and not is_parser_definition(node):
                    out.append((f"{os.path.relpath(path, REPO)}:{node.name}", lines))
    return sorted(out, key=lambda item: -item[1])


def test_parser_definitions_are_recognised():
    builder = (
        "def p():\n    p = X()\n" + "".join(f"    p.add_argument('--f{i}')\n" for i in range(70)) + "    return p\n"
    )
    loop = "def f():\n" + "".join(f"    x{i} = {i}\n" for i in range(70))
    aliased = "def p(parser):\n    add = parser.add_argument\n" + "".join(f"    add('--f{i}')\n" for i in range(70))
    assert is_parser_definition(ast.parse(builder).body[0]) and is_parser_definition(ast.parse(aliased).body[0])
    assert not is_parser_definition(ast.parse(loop).body[0])


def test_no_function_is_longer_than_sixty_lines():
    """Long drivers are split into build_* steps and the loop; argparse builders are exempt."""
    folders = (*PACKAGES, "process_data", "scripts", "bench")
    assert long_functions(sources(folders)) == []


def entry_parsers() -> dict:
    from cpd.opts import get_args_parser as cpd_parser
    from memdpc.opts import get_args_parser as memdpc_pretrain
    from memdpc.opts import get_eval_args_parser as memdpc_eval
    from videomoco.opts import get_args_parser as videomoco_pretrain
    from videomoco.opts import get_eval_args_parser as videomoco_eval
    from vtdl.opts import get_args_parser as vtdl_finetune
    from vtdl.opts import get_pretrain_args_parser as vtdl_pretrain

    parsers = (memdpc_pretrain, memdpc_eval, vtdl_pretrain, vtdl_finetune, videomoco_pretrain, videomoco_eval)
    return {f"{p.__module__}.{p.__name__}": p() for p in (*parsers, cpd_parser)}


def test_the_run_flags_have_one_definition():
    """Where an entry point has one of the shared run flags, it has the shared spelling, default and meaning."""
    from shared_utils.cli import RUN_FLAGS

    for name, parser in entry_parsers().items():
        actions = {a.dest: a for a in parser._actions}
        for flag, (spellings, spec) in RUN_FLAGS.items():
            action = actions.get(spec.get("dest", flag))
            if action is None or flag == "seed":  # seeds: each original's own default (and CPD's --manual_seed)
                continue
            assert list(action.option_strings) == list(spellings), (name, flag)
            assert action.default == spec.get("default", False) and action.help == spec["help"], (name, flag)


def test_iteration_caps_mean_the_same_everywhere():
    parsers = entry_parsers()
    names = ("memdpc.opts.get_args_parser", "vtdl.opts.get_pretrain_args_parser", "vtdl.opts.get_args_parser")
    for name in names + ("cpd.opts.get_args_parser",):
        args = parsers[name].parse_args(["--iters_per_epoch", "2", "--max_iters", "5"])
        assert (args.iters_per_epoch, args.max_iters) == (2, 5), name
    assert parsers["vtdl.opts.get_pretrain_args_parser"].parse_args(["--stop_at_iter", "3"]).max_iters == 3
    assert parsers["videomoco.opts.get_args_parser"].parse_args(["DATA", "--max_iters", "4"]).max_iters == 4
