"""The home quota, asked of the site's tools before anything is copied.

The tools are stand-ins on ``PATH`` that print what the real ones print
(the formats of quota-tools' ``quota``, Lustre's ``lfs quota``, GPFS's
``mmlsquota -Y`` and ``beegfs-ctl --getquota --csv``), with the usage of the
test's home measured as the kernel counts it (``du``, ``find``)."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin.mounts import Mount
from conda_migrate_plugin.quota_tools import ask
from tests.support.trees import tree_snapshot

if TYPE_CHECKING:
    from pathlib import Path

#: Prints the usage of $FAKE_QUOTA_HOME (1 KiB blocks, inodes) as two words.
USAGE = (
    'kb=$(du -sk "$FAKE_QUOTA_HOME" | cut -f1); n=$(find "$FAKE_QUOTA_HOME" | wc -l)'
)

FAKES = {
    # quota-tools 4.x, quota -u -v -w -p -f MOUNT: heading(), then
    # print_fs_location's "%15s" and two " %7s%c %6s %7s %7s" groups.
    "quota": f"""
        {USAGE}
        printf 'Disk quotas for user %s (uid %u): \\n' "$(id -un)" "$(id -u)"
        printf '%15s%8s %7s%8s%8s%8s %7s%8s%8s\\n' Filesystem blocks quota limit grace files quota limit grace
        printf '%15s %7s%c %6s %7s %7s %7s%c %6s %7s %7s\\n' /dev/fake "$kb" ' ' 0 "$FAKE_QUOTA_KB" 0 "$n" ' ' 0 "$FAKE_QUOTA_FILES" 0
    """,
    # lfs quota -u USER MOUNT: print_quota_title(), then the mount point on a
    # line of its own when longer than 15 characters, grace "-" when none.
    "lfs": f"""
        {USAGE}
        printf 'Disk quotas for usr %s (uid %u):\\n' "$3" "$(id -u)"
        printf '%15s%8s %7s%8s%8s%8s %7s%8s%8s\\n' Filesystem kbytes quota limit grace files quota limit grace
        printf '%s\\n%15s' "$4" ''
        printf ' %7s%c %6s %7s %7s %7s%c %6s %7s %7s\\n' "$kb" ' ' 0 "$FAKE_QUOTA_KB" - "$n" ' ' 0 "$FAKE_QUOTA_FILES" -
    """,
    # mmlsquota -u USER -Y DEVICE: the HEADER line, then one USR line (KiB).
    "mmlsquota": f"""
        {USAGE}
        echo 'mmlsquota:user:HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:blockQuota:blockLimit:blockInDoubt:blockGrace:filesUsage:filesQuota:filesLimit:filesInDoubt:filesGrace:remarks:fid:filesetname:'
        echo "mmlsquota:user:0:1:::$4:USR:$(id -u):$2:$kb:0:$FAKE_QUOTA_KB:0:none:$n:0:$FAKE_QUOTA_FILES:0:none::0:root:"
    """,
    # beegfs-ctl --getquota --uid UID --csv --mount=MOUNT: bytes.
    "beegfs-ctl": f"""
        {USAGE}
        echo 'name,id,size,hard,files,hard'
        echo "$(id -un),$3,$((kb * 1024)),$((FAKE_QUOTA_KB * 1024)),$n,$FAKE_QUOTA_FILES"
    """,
}


@pytest.fixture
def fake_tools(tmp_path, home, monkeypatch):
    """Put the stand-ins for ``names`` first on PATH, with limits in KiB
    and files; returns the function that does it."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("FAKE_QUOTA_HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def install(*names: str, kib: int = 0, files: int = 0) -> Path:
        for name in names:
            script = bin_dir / name
            script.write_text("#!/bin/sh\n" + textwrap.dedent(FAKES[name]))
            script.chmod(0o755)
        monkeypatch.setenv("FAKE_QUOTA_KB", str(kib))
        monkeypatch.setenv("FAKE_QUOTA_FILES", str(files))
        return bin_dir

    if not shutil.which("du") or not shutil.which("find"):
        pytest.skip("du and find are needed to play the quota tools")
    return install


def used(home: Path) -> tuple[int, int]:
    """What the stand-ins report: KiB (du) and entries (find)."""
    kib = sum(
        os.lstat(os.path.join(d, n)).st_blocks
        for d, dirs, files in os.walk(home)
        for n in dirs + files
    )
    entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(home)) + 1
    return (kib + os.lstat(home).st_blocks) // 2, entries


@pytest.mark.parametrize(
    ("tool", "fstype"),
    [
        ("quota", "ext4"),
        ("lfs", "lustre"),
        ("mmlsquota", "gpfs"),
        ("beegfs-ctl", "beegfs"),
    ],
)
def test_each_tool_is_read_as_it_prints(fake_tools, home, tool, fstype):
    fake_tools(tool, kib=5 * 2**20, files=100_000)
    (home / "some-file").write_bytes(b"x" * 100_000)
    kib, entries = used(home)
    mount = Mount(str(home), "gpfs0", fstype)
    quota, tried = ask(home, mount)
    assert quota is not None, tried
    assert quota.used_bytes == kib * 1024
    assert quota.used_files == entries
    assert quota.limit_bytes == 5 * 2**30
    assert quota.limit_files == 100_000
    assert tried[-1] == quota.tool


def test_no_limit_is_no_limit(fake_tools, home):
    fake_tools("quota", kib=0, files=0)
    quota, _ = ask(home, Mount(str(home), "/dev/fake", "ext4"))
    assert quota is not None
    assert quota.limit_bytes is None and quota.left_bytes is None
    assert quota.limit_files is None


def two_envs(make_env, tmp_path) -> Path:
    """``a1``, and ``big``, which holds 8 MiB more (a pip-installed file)."""
    envs = tmp_path / "scratch" / "envs"
    make_env(envs / "a1", ["demo-app"])
    big = make_env(envs / "big", ["demo-app"])
    (big / "lib" / "big.bin").write_bytes(os.urandom(8 * 2**20))
    return envs


def test_an_environment_that_cannot_fit_is_refused_before_its_copy(
    make_env, tmp_path, home, migrate, fake_tools
):
    envs = two_envs(make_env, tmp_path)
    (home / ".conda").mkdir()
    kib, _ = used(home)
    # Room for a1 with the run's margin (64 MiB and 5 %), not for big's 8 MiB.
    fake_tools("quota", kib=kib + 64 * 1024 + 4 * 1024, files=10**6)
    big_before = tree_snapshot(envs / "big")
    out, err, code = migrate("-d", envs, "--all")
    assert code == 1, out + err
    assert (
        "Successfully migrated and removed old environment: " + str(envs / "a1") in out
    )
    assert "Migration of big failed: The environment does not fit your quota on" in out
    assert f"Quota on {home / '.conda' / 'envs'} before: " in out
    assert f"Quota on {home / '.conda' / 'envs'} after: " in out
    assert "said quota" in out and "with margin" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert "conda clean --all" in out and "--dest" in out
    assert tree_snapshot(envs / "big") == big_before
    assert sorted(p.name for p in (home / ".conda" / "envs").iterdir()) == ["a1"]


def test_too_many_files_is_refused_too(make_env, tmp_path, home, migrate, fake_tools):
    envs = two_envs(make_env, tmp_path)
    (home / ".conda").mkdir()
    _, entries = used(home)
    fake_tools("quota", kib=10 * 2**20, files=entries + 500)
    out, err, code = migrate("-d", envs / "a1", "--all")
    assert code == 1, out + err
    assert "files (with margin)" in out and "left" in out
    assert not (home / ".conda" / "envs" / "a1").exists()


def test_dry_run_shows_the_quota_before_and_after(
    make_env, tmp_path, home, migrate, fake_tools
):
    envs = two_envs(make_env, tmp_path)
    (home / ".conda").mkdir()
    fake_tools("quota", kib=10 * 2**20, files=10**6)
    out, err, code = migrate("-d", envs, "--all", "--dry-run")
    assert code == 0, out + err
    assert f"Quota on {home / '.conda' / 'envs'} before: " in out
    assert f"Quota on {home / '.conda' / 'envs'} after: " in out
    out, err, code = migrate("-d", envs, "--all", "--dry-run", "--json")
    document = json.loads(out)
    quota = document["quota"]
    assert quota["tool"] == "quota"
    planned = document["totals"]["written_bytes"]
    assert quota["after"]["used_bytes"] - quota["before"]["used_bytes"] == planned
    assert quota["before"]["limit_bytes"] == 10 * 2**30


def test_no_tool_is_said_not_an_error(make_env, tmp_path, home, migrate, monkeypatch):
    envs = tmp_path / "scratch" / "envs"
    make_env(envs / "a1", ["demo-app"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if any(shutil.which(t) for t in ("quota", "lfs", "mmlsquota", "beegfs-ctl")):
        pytest.skip("a real quota tool is installed here")
    out, err, code = migrate("-d", envs, "--all")
    assert code == 0, out + err
    assert "no quota tool is installed here" in out


def test_the_sites_command_wins(
    make_env, tmp_path, home, migrate, fake_tools, monkeypatch
):
    envs = tmp_path / "scratch" / "envs"
    make_env(envs / "a1", ["demo-app"])
    bin_dir = fake_tools("quota", kib=10 * 2**20, files=10**6)
    site = bin_dir / "site-quota"
    site.write_text(
        "#!/bin/sh\necho bytes_used=1000\necho bytes_limit=2000\n"
        'echo files_used=1\necho files_limit=0\necho "$1" > "$FAKE_QUOTA_HOME/asked"\n'
    )
    site.chmod(0o755)
    (home / ".condarc").write_text("migrate_quota_command: site-quota\n")
    out, err, code = migrate("-d", envs, "--all")
    assert code == 1, out + err
    assert "does not fit your quota" in out and "said site-quota" in out
    assert (home / "asked").read_text().strip() == str(home / ".conda")
    monkeypatch.setenv("CONDA_MIGRATE_QUOTA_COMMAND", "quota")
    (home / "asked").unlink()
    out, err, code = migrate("-d", envs, "--all")
    assert code == 0, out + err
    assert not (home / "asked").exists()


def three_envs(make_env, tmp_path) -> Path:
    """``a1`` and ``c1``, small, and ``big`` between them, 8 MiB larger."""
    envs = two_envs(make_env, tmp_path)
    make_env(envs / "c1", ["demo-text"])
    return envs


def test_a_quota_statvfs_does_not_show_is_met_mid_copy_and_stops_the_run(
    make_env, tmp_path, home, migrate, slowfs_mount
):
    """No tool to ask, and statvfs shows the server's free space: ``big``
    starts and meets EDQUOT; ``c1`` is not copied into the full quota."""
    envs = three_envs(make_env, tmp_path)
    point = slowfs_mount(tmp_path / "nfs-home", quota_kb=4 * 1024)
    dest = point / "envs"
    big, c1 = tree_snapshot(envs / "big"), tree_snapshot(envs / "c1")
    out, err, code = migrate("-d", envs, "--all", "--dest", dest)
    assert code == 1, out + err
    assert "no quota tool" in out
    assert (
        "Successfully migrated and removed old environment: " + str(envs / "a1") in out
    )
    assert (
        f"Migration of big failed: Your quota on {dest} filled up (Disk quota "
        "exceeded) while big was copied: " in out
    )
    assert "c1 was not tried: " in out
    assert tree_snapshot(envs / "big") == big and tree_snapshot(envs / "c1") == c1
    assert sorted(p.name for p in dest.iterdir()) == ["a1"]


def test_the_quota_tool_refuses_what_statvfs_would_let_start(
    make_env, tmp_path, home, migrate, slowfs_mount, fake_tools, monkeypatch
):
    """Room for the small ones with the run's margin (64 MiB and 5 %), not
    for big's 8 MiB more."""
    envs = three_envs(make_env, tmp_path)
    point = slowfs_mount(tmp_path / "nfs-home", quota_kb=70 * 1024)
    free = os.statvfs(point)
    assert free.f_bavail * free.f_frsize > 70 * 2**20  # the server's, not ours
    dest = point / "envs"
    fake_tools("quota", kib=70 * 1024, files=10**6)
    monkeypatch.setenv("FAKE_QUOTA_HOME", str(point))
    big = tree_snapshot(envs / "big")
    out, err, code = migrate("-d", envs, "--all", "--dest", dest)
    assert code == 1, out + err
    assert "Migration of big failed: The environment does not fit your quota" in out
    assert "Disk quota exceeded" not in out
    assert tree_snapshot(envs / "big") == big
    assert sorted(p.name for p in dest.iterdir()) == ["a1", "c1"]


def test_the_package_cache_moving_home_says_what_it_holds(scratch, home, migrate):
    from conda_migrate_plugin.progress import size
    from conda_migrate_plugin.quota import usage

    cache = scratch.envs_dir / "pkgs"
    (cache / "demo-1.0-0.conda").write_bytes(os.urandom(300_000))
    (home / ".condarc").write_text(f"pkgs_dirs:\n  - {cache}\n")
    nbytes, files = usage(cache)
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
    assert code == 0, out + err
    assert (
        f"conda's package cache would move into {home}/.conda/pkgs: " in out
        and f"The cache it replaces, {cache}, holds {size(nbytes)} in {files} files."
        in out
    )
    assert nbytes >= 300_000 and files == 3
