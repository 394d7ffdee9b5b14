"""The real test videos are found as ``../shared/videos`` from the repository root in every clone:
one reached through a symlink, a git worktree nested elsewhere, a clone of a local checkout."""

import subprocess
from pathlib import Path

from conftest import (REAL_NAMES, REPO, SHARED_VIDEOS, find_shared_videos, real_video_missing,
                      repo_root, shared_video_places)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=cwd,
                   check=True, capture_output=True, timeout=60)


def checkout(path: Path) -> Path:
    """A one-commit repository with a tests/ folder."""
    (path / "tests").mkdir(parents=True)
    (path / "tests" / "conftest.py").write_text("")
    git(path, "init", "-q")
    git(path, "add", "tests")
    git(path, "commit", "-q", "-m", "init")
    return path


def shared(work: Path) -> Path:
    videos = work / "shared" / "videos"
    videos.mkdir(parents=True)
    (videos / REAL_NAMES[0]).write_bytes(b"")
    return videos


def test_a_clone_reached_through_a_symlink_looks_beside_the_link(tmp_path, monkeypatch):
    # work/clone -> elsewhere/clone; work/shared/videos beside the link, nothing beside the target.
    videos = shared(tmp_path / "work")
    target = checkout(tmp_path / "elsewhere" / "clone")
    link = tmp_path / "work" / "clone"
    link.symlink_to(target)
    # pytest gives conftest's path resolved; the shell's $PWD keeps the link.
    for pwd in (link, link / "tests"):
        monkeypatch.setenv("PWD", str(pwd))
        assert repo_root(target / "tests" / "conftest.py") == link
        assert find_shared_videos(repo_root(target / "tests" / "conftest.py")) == videos
    monkeypatch.setenv("PWD", str(tmp_path))  # elsewhere: the file's own folder
    assert repo_root(target / "tests" / "conftest.py") == target


def test_a_nested_worktree_and_a_local_clone_find_the_main_checkouts_shared_videos(tmp_path):
    videos = shared(tmp_path / "work")
    main = checkout(tmp_path / "work" / "main")
    worktree = tmp_path / "deep" / "nested" / "wt"
    git(main, "worktree", "add", "-q", str(worktree))
    assert find_shared_videos(worktree) == videos
    clone = tmp_path / "other" / "clone"
    git(tmp_path, "clone", "-q", str(main), str(clone))
    assert find_shared_videos(clone) == videos


def test_without_shared_videos_the_skip_reason_names_where_it_looked(tmp_path):
    root = checkout(tmp_path / "lonely" / "repo")
    assert find_shared_videos(root) is None
    assert shared_video_places(root)[0] == tmp_path / "lonely" / "shared" / "videos"
    reason = real_video_missing("k400_30fps.mp4")
    assert reason.startswith("k400_30fps.mp4 is not here") and str(SHARED_VIDEOS) in reason


def test_this_checkout_uses_the_videos_beside_it_when_they_are_there():
    beside = REPO.parent / "shared" / "videos"
    if beside.is_dir():  # never a skip where the videos are
        assert SHARED_VIDEOS == beside
    assert SHARED_VIDEOS == (find_shared_videos(REPO) or shared_video_places(REPO)[0])
