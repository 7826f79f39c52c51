"""Provenance that survives a copy: a fingerprint of the code that ran, the same for any copy of the
same sources, different as soon as one source file differs; a dirty flag that means what it says."""
import shutil
import subprocess

from bench.provenance import CODE_PATHS, REPO_ROOT, code_files, code_fingerprint, git_state


def _copy(dest):
    dest.mkdir()
    for name in CODE_PATHS:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def test_two_copies_without_git_share_the_fingerprint_and_one_changed_file_changes_it(tmp_path):
    a, b = _copy(tmp_path / "a"), _copy(tmp_path / "b")
    assert not (a / ".git").exists()
    assert code_fingerprint(a) == code_fingerprint(b) == code_fingerprint(REPO_ROOT)
    (b / "bench" / "__pycache__").mkdir(exist_ok=True)
    (b / "bench" / "__pycache__" / "x.pyc").write_bytes(b"compiled")      # not code
    assert code_fingerprint(b) == code_fingerprint(a)
    f = b / "baselines" / "colt.py"
    f.write_text(f.read_text() + "\n# one more line\n")
    assert code_fingerprint(b) != code_fingerprint(a)
    (a / "bench" / "configs" / "smoke.yaml").write_text("name: other\n")   # shipped presets count too
    assert code_fingerprint(a) not in (code_fingerprint(b), code_fingerprint(REPO_ROOT))
    assert any(p.suffix == ".yaml" for p in code_files(REPO_ROOT))


def test_the_dirty_flag_sees_untracked_code_and_ignores_results(tmp_path):
    """A throwaway repository with the same layout: an untracked source file makes it dirty (git status
    --untracked-files=no could not see it); a results file does not."""
    import bench.provenance as prov

    repo = _copy(tmp_path / "repo")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=repo, check=True)
    old = prov.REPO_ROOT
    try:
        prov.REPO_ROOT = repo
        prov.git_state.cache_clear()
        assert git_state()[1] is False
        (repo / "results").mkdir()
        (repo / "results" / "r.json").write_text("{}")
        prov.git_state.cache_clear()
        assert git_state()[1] is False
        (repo / "bench" / "new_method.py").write_text("NAME = 'x'\n")
        prov.git_state.cache_clear()
        assert git_state()[1] is True
    finally:
        prov.REPO_ROOT = old
        prov.git_state.cache_clear()
