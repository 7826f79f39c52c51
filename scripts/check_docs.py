"""Do the documented commands reproduce the committed files?  (``make check-docs``; CI runs it.)

Reads every ``python -m bench collect|table|plot|claims|report`` command quoted in a fenced code
block of README.md and docs/*.md whose ``--results`` folder holds committed run records (commands
with placeholders, like ``[--dataset NAME]``, and every ``run`` are left alone: nothing is trained).
Copies the repository's files (tracked, and untracked ones git does not ignore) into a temporary
folder, without the committed outputs of those folders, and runs the commands there in the order
the docs give them. After each command, every committed text file it wrote (tables, claims,
REPORT.md, the rounds CSV) must equal the committed one byte for byte. Every
committed table (``results/*/tables/*``) must be written by some documented command. Figures
(PNG, PDF) are regenerated, not compared: their bytes depend on the matplotlib and FreeType
versions. Exit code 0: every committed file reproduced; 1: what differs, with a diff; 2: bad input.

    python scripts/check_docs.py [--repo DIR] [--keep]
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRITERS = ("collect", "table", "plot", "claims", "report")
TEXT_SUFFIXES = (".md", ".csv", ".tex", ".txt", ".json", ".yaml")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Command:
    doc: str          # where it is quoted, e.g. docs/findings.md:33
    argv: list        # after 'python -m bench'
    results: str      # its --results folder, as written
    plots: str | None

    def __str__(self) -> str:
        return "python -m bench " + " ".join(shlex.quote(a) for a in self.argv)


def doc_files(repo: Path) -> list[Path]:
    return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.is_file()]


def quoted_commands(path: Path, repo: Path) -> list[Command]:
    """The report commands in the fenced code blocks of ``path`` (continuation lines joined, comments cut)."""
    out, inside, pending, start = [], False, "", 0
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if not pending:
            start = no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = pending + line, ""
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError:
            continue
        if len(tokens) < 4 or tokens[0] not in ("python", "python3") or tokens[1:3] != ["-m", "bench"]:
            continue
        argv = tokens[3:]
        if argv[0] not in WRITERS or any(c in a for a in argv for c in "[]|<>"):
            continue                      # trains, or a signature with placeholders
        opts = dict(zip(argv[1:], argv[2:]))
        plots = opts.get("--plots")
        out.append(Command(f"{path.relative_to(repo).as_posix()}:{start}", argv,
                           os.path.normpath(opts.get("--results", "results")), plots and os.path.normpath(plots)))
    return out


def repo_files(repo: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore (what a commit of the tree would hold), present."""
    try:
        res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                             capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"error: {repo} is not a git checkout ({e}); check-docs compares with the committed files")
    return sorted({f for f in res.stdout.decode().split("\0") if f and (repo / f).is_file()})


def outputs_of(cmd: Command, rel: str) -> bool:
    """Whether ``rel`` is something ``cmd`` may write (so it is left out of the copy)."""
    res = cmd.results.rstrip("/") + "/"
    plots = (cmd.plots.rstrip("/") if cmd.plots else res + "plots") + "/"
    return (rel.startswith(res + "tables/") or rel == res + "REPORT.md"
            or rel.startswith(plots))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def short_diff(want: bytes, got: bytes, name: str) -> str:
    try:
        a, b = want.decode().splitlines(), got.decode().splitlines()
    except UnicodeDecodeError:
        return f"    (binary: {len(want)} bytes committed, {len(got)} written)"
    lines = list(difflib.unified_diff(a, b, f"committed {name}", f"written {name}", lineterm="", n=1))
    more = f"\n    ... ({len(lines) - 24} more diff lines)" if len(lines) > 24 else ""
    return "\n".join("    " + x for x in lines[:24]) + more


def check(repo: Path, keep: bool = False, log=print) -> int:
    repo = repo.resolve()
    files = repo_files(repo)
    tracked = set(files)
    with_records = {f.split("/runs/")[0] for f in files if re.match(r"[^/].*/runs/[^/]+/[^/]+\.json$", f)}
    commands = [c for d in doc_files(repo) for c in quoted_commands(d, repo)]
    runnable = [c for c in commands if c.results in with_records]
    for c in commands:
        if c not in runnable:
            log(f"skipped {c.doc}: {c} (no committed run records under {c.results})")
    tmp = Path(tempfile.mkdtemp(prefix="check-docs-"))
    failures, compared, figures, written_ever = [], 0, 0, set()
    try:
        for f in files:
            if not any(outputs_of(c, f) for c in runnable):
                (tmp / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / f, tmp / f)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}     # the copy's code, nothing else
        for c in runnable:
            before = snapshot(tmp)
            res = subprocess.run([sys.executable, "-m", "bench", *c.argv], cwd=tmp, env=env, capture_output=True,
                                 text=True, timeout=600)
            if res.returncode != 0:
                tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
                failures.append(f"{c.doc}: `{c}` exited {res.returncode}: {tail}")
                continue
            after = snapshot(tmp)
            wrote = sorted(k for k, v in after.items() if before.get(k) != v)
            written_ever |= set(wrote)
            for rel in wrote:
                if rel not in tracked:
                    continue
                if not rel.endswith(TEXT_SUFFIXES):
                    figures += 1
                    continue
                compared += 1
                want, got = (repo / rel).read_bytes(), (tmp / rel).read_bytes()
                if want != got:
                    failures.append(f"{c.doc}: `{c}` writes {rel}, which differs from the committed file:\n"
                                    + short_diff(want, got, rel))
        for f in sorted(tracked):
            if re.match(r"results/[^/]+/tables/[^/]+$", f) and f not in written_ever:
                failures.append(f"{f} is committed but no command quoted in README.md or docs/*.md writes it "
                                "(quote the command that made it, or remove the file)")
    finally:
        if keep:
            log(f"kept the copy at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        log(f"FAIL {f}")
    summary = (f"check-docs: {len(runnable)} documented command(s) run, {compared} committed text file(s) compared, "
               f"{figures} committed figure file(s) regenerated (not compared)")
    log(summary + (f"; {len(failures)} problem(s)" if failures else "; every committed file reproduced"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="check_docs.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy (to look at what was written)")
    args = p.parse_args(argv)
    return check(args.repo, args.keep)


if __name__ == "__main__":
    sys.exit(main())
