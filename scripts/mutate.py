"""Mutation check: break one line of product code at a time and make sure the fast tests notice.

    python scripts/mutate.py [--only ID[,ID]] [--list] [--timeout S]      (make mutate)

Each mutation in tests/mutations.toml names a file, the exact text of one line (leading/trailing whitespace
ignored; it must occur exactly once, else the row is STALE), its replacement (indented as the original) and the
fast tests that cover it. The script writes the mutated file, runs those tests with `pytest -x -m "not slow"`,
restores the file (also on Ctrl-C / SIGTERM) and prints one row per mutation: caught by which test, NOT CAUGHT,
STALE, INVALID (the mutated file does not compile) or TIMEOUT (not counted as caught). Exit code 0 only when every mutation was caught and the
tracked files are byte-identical to what they were before the run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader pip vendors
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LIST = REPO / "tests" / "mutations.toml"
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: list[str]
    why: str = ""
    k: str = ""  # optional pytest -k expression


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # CAUGHT, NOT CAUGHT, STALE, INVALID, TIMEOUT (only CAUGHT passes)
    detail: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of the test run (independent of how busy the machine is)


def load_mutations(path: Path) -> list[Mutation]:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    mutations = [
        Mutation(
            id=m["id"],
            file=m["file"],
            original=m["original"],
            replacement=m["replacement"],
            tests=list(m["tests"]),
            why=m.get("why", ""),
            k=m.get("k", ""),
        )
        for m in data["mutation"]
    ]
    ids = [m.id for m in mutations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        sys.exit(f"error: duplicate mutation ids in {path}: {', '.join(duplicates)}")
    return mutations


def mutate_text(text: str, mutation: Mutation) -> str | None:
    """The file text with the one matching line replaced, or None when the line is not found exactly once."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == mutation.original.strip()]
    if len(hits) != 1:
        return None
    line = lines[hits[0]]
    indent = line[: len(line) - len(line.lstrip())]
    ending = line[len(line.rstrip("\r\n")) :]
    lines[hits[0]] = indent + mutation.replacement.strip() + ending
    return "".join(lines)


class Restorer:
    """Holds the original bytes of the file being mutated; restores them on exit, exception or signal."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.original: bytes = b""

    def hold(self, path: Path) -> None:
        self.path, self.original = path, path.read_bytes()

    def restore(self) -> None:
        if self.path is not None:
            self.path.write_bytes(self.original)
            self.path = None


def run_tests(mutation: Mutation, timeout: float) -> tuple[str, str]:
    """(status, first failing test or a note) of the mutation's tests on the current (mutated) tree."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", "--no-header"]
    cmd += ["-rfE", *mutation.tests]
    if mutation.k:
        cmd += ["-k", mutation.k]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"tests ran past {timeout:.0f} s: rerun with a larger --timeout (a busy machine?)"
    output = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "NOT CAUGHT", ""
    if proc.returncode == 5:
        return "NOT CAUGHT", "no test collected (check the tests/k of this mutation)"
    failed = FAILED_LINE.findall(output)
    if failed:
        return "CAUGHT", failed[0]
    tail = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["?"]
    return "CAUGHT", f"pytest exit {proc.returncode}: {tail[0][:100]}"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_one(mutation: Mutation, restorer: Restorer, timeout: float) -> Outcome:
    start, cpu = time.time(), children_cpu()
    path = REPO / mutation.file
    if not path.is_file():
        return Outcome(mutation, "STALE", f"no file {mutation.file}")
    text = path.read_text()
    mutated = mutate_text(text, mutation)
    if mutated is None:
        count = sum(line.strip() == mutation.original.strip() for line in text.splitlines())
        return Outcome(mutation, "STALE", f"original line found {count} times (must be exactly once)")
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as err:
        return Outcome(mutation, "INVALID", f"does not compile: {err.msg} (line {err.lineno})")
    restorer.hold(path)
    try:
        path.write_text(mutated)
        status, detail = run_tests(mutation, timeout)
    finally:
        restorer.restore()
    return Outcome(mutation, status, detail, time.time() - start, children_cpu() - cpu)


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout


def file_hashes(paths: set[str]) -> dict[str, str]:
    return {p: hashlib.sha256((REPO / p).read_bytes()).hexdigest() for p in sorted(paths) if (REPO / p).is_file()}


def print_table(outcomes: list[Outcome]) -> None:
    rows = [("#", "mutation", "file", "result", "caught by / note", "wall s", "cpu s")]
    for n, o in enumerate(outcomes, 1):
        row = (str(n), o.mutation.id, o.mutation.file, o.status, o.detail, f"{o.seconds:.0f}", f"{o.cpu_seconds:.0f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list_file", default=str(DEFAULT_LIST), help="TOML file of [[mutation]] entries")
    parser.add_argument("--only", default="", help="comma-separated mutation ids to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutations and whether each still applies")
    parser.add_argument("--timeout", type=float, default=900, help="wall seconds per mutation's test run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    mutations = load_mutations(Path(args.list_file))
    if args.only:
        wanted = {i.strip() for i in args.only.split(",") if i.strip()}
        unknown = wanted - {m.id for m in mutations}
        if unknown:
            sys.exit(f"error: unknown mutation id(s): {', '.join(sorted(unknown))}")
        mutations = [m for m in mutations if m.id in wanted]
    if args.list:
        for m in mutations:
            applies = (REPO / m.file).is_file() and mutate_text((REPO / m.file).read_text(), m) is not None
            print(f"{m.id:32s} {m.file:36s} {'ok' if applies else 'STALE'}  {m.why}")
        return 0

    touched = {m.file for m in mutations}
    before_status, before_hashes = git_status(), file_hashes(touched)
    restorer = Restorer()

    def on_signal(signum, _frame):
        restorer.restore()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    outcomes: list[Outcome] = []
    start = time.time()
    try:
        for n, mutation in enumerate(mutations, 1):
            print(f"[{n}/{len(mutations)}] {mutation.id} ({mutation.file}) ...", flush=True)
            outcome = check_one(mutation, restorer, args.timeout)
            print(
                f"    {outcome.status} {outcome.detail} ({outcome.seconds:.0f} s, {outcome.cpu_seconds:.0f} CPU s)",
                flush=True,
            )
            outcomes.append(outcome)
    except KeyboardInterrupt:
        print("interrupted: the mutated file was restored", file=sys.stderr)
    finally:
        restorer.restore()

    print()
    print_table(outcomes)
    bad = [o for o in outcomes if o.status != "CAUGHT"]
    after_status, after_hashes = git_status(), file_hashes(touched)
    clean = after_hashes == before_hashes and after_status == before_status
    if before_status == "":
        clean = clean and subprocess.run(["git", "diff", "--quiet"], cwd=REPO).returncode == 0
    caught = len(outcomes) - len(bad)
    print(
        f"\n{caught}/{len(outcomes)} mutations caught in {time.time() - start:.0f} s "
        f"({sum(o.cpu_seconds for o in outcomes):.0f} CPU s); working tree "
        f"{'unchanged' if clean else 'CHANGED (restore it with git checkout)'}"
    )
    if len(outcomes) < len(mutations):
        return 130
    return 0 if not bad and clean else 1


if __name__ == "__main__":
    sys.exit(main())
