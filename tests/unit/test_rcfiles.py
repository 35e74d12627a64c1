"""The rc-file editor, checked byte for byte against golden files.

Golden files under ``tests/data/rcfiles`` spell the test's home directory ``@HOME@``
(it is a fresh temporary directory per test); everything else is literal bytes. The
``*.diff`` files were made with ``diff -U0`` (GNU diffutils: changed lines only, no context), so they check our diff
text against an independent implementation.
"""

from __future__ import annotations

import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from conda_migrate_plugin.rcfiles import (
    DirMove,
    EnvMove,
    RcEdit,
    apply_rc_edits,
    plan_rc_edits,
)
from conda_migrate_plugin.rcfiles import condarc as condarc_text
from tests.support.users import OTHER_USER, USER, as_user, user_home

DATA = Path(__file__).parents[1] / "data" / "rcfiles"
NOW = datetime(2024, 5, 17, 9, 30, 5)
STAMP = "20240517-093005"
SCRATCH = Path("/scratch/u")


class Layout(NamedTuple):
    env_moves: list[EnvMove]
    dir_moves: list[DirMove]
    environ: dict[str, str]


def site(home: Path) -> Layout:
    """The site doc's example: envs abc and hdf migrated, abcd and amd left in scratch."""
    envs = home / ".conda/envs"
    return Layout(
        [
            EnvMove(SCRATCH / "conda-envs/abc", envs / "abc"),
            EnvMove(SCRATCH / "myenvs/hdf", envs / "hdf"),
        ],
        [DirMove(SCRATCH / "conda-envs", envs, home / ".conda/pkgs")],
        {"SCRATCH": str(SCRATCH)},
    )


def scratch_in_home(home: Path) -> Layout:
    """A cluster whose $SCRATCH lies under $HOME, so ~ and $HOME spellings name it."""
    scratch, envs = home / "scratch", home / ".conda/envs"
    return Layout(
        [EnvMove(scratch / "envs/abc", envs / "abc")],
        [DirMove(scratch / "envs", envs, home / ".conda/pkgs")],
        {"SCRATCH": str(scratch)},
    )


def plan(home: Path, layout: Layout | None = None) -> list[RcEdit]:
    layout = layout or site(home)
    return plan_rc_edits(layout.env_moves, layout.dir_moves, home, layout.environ)


def golden(name: str, home: Path) -> bytes:
    return (DATA / name).read_bytes().replace(b"@HOME@", os.fsencode(home))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


GOLDEN_CASES = [
    ("bashrc_site", ".bashrc", site),
    ("bash_profile_crlf_latin1", ".bash_profile", site),
    ("bashrc_old_site_doc", ".bashrc", site),
    ("zshrc_scratch_in_home", ".zshrc", scratch_in_home),
    ("condarc_block", ".condarc", site),
    ("condarc_flow_crlf", ".config/conda/condarc", site),
    ("kernel_abc", ".local/share/jupyter/kernels/abc/kernel.json", site),
]


@pytest.mark.parametrize(
    ("case", "name", "layout"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES]
)
def test_rewrites_file_to_golden_bytes(home, case, name, layout):
    path = home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    original = golden(f"{case}.input", home)
    path.write_bytes(original)
    path.chmod(0o640)

    edits = plan(home, layout(home))

    assert [(e.path, e.target, e.error) for e in edits] == [(path, path, None)]
    (edit,) = edits
    assert edit.old == original
    assert edit.new == golden(f"{case}.expected", home)
    assert edit.diff == golden(f"{case}.diff", home).decode()
    # Planning is the dry run: nothing written, no backup.
    assert path.read_bytes() == original
    assert list(path.parent.iterdir()) == [path]

    assert apply_rc_edits(edits, now=NOW) == [edit]

    assert edit.error is None
    assert path.read_bytes() == edit.new
    assert mode(path) == 0o640
    assert edit.backup == path.with_name(f"{path.name}.conda-migrate-{STAMP}")
    assert edit.backup.read_bytes() == original
    assert mode(edit.backup) == 0o600
    # No temporary file is left beside it.
    assert sorted(path.parent.iterdir()) == sorted([path, edit.backup])
    assert plan(home, layout(home)) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("conda activate /scratch/u/conda-envs/abc", "conda activate @E/abc"),
        ("conda activate /scratch/u/conda-envs/abcd", None),
        ("conda activate /scratch/u/conda-envs/abc-2", None),
        ("conda activate /scratch/u/conda-envs/abc.old", None),
        ("ls /scratch/u/conda-envs/abc*", None),
        ("ls old/scratch/u/conda-envs/abc", None),
        ("ls $SCRATCH_OLD/conda-envs/abc", None),
        ("CFLAGS=-I/scratch/u/conda-envs/abc/include", "CFLAGS=-I@E/abc/include"),
        ("ls {/scratch/u/conda-envs/abc,/tmp}", "ls {@E/abc,/tmp}"),
        ("ls $SCRATCH/conda-envs/abc/", "ls $HOME/.conda/envs/abc/"),
        ("ls ${SCRATCH}/conda-envs/abc", "ls ${HOME}/.conda/envs/abc"),
        ("export CONDA_ENVS_PATH=/scratch/u/myenvs", None),
        ("MY_CONDA_ENVS_PATH=/scratch/u/conda-envs", None),
        ("CONDA_ENVS_PATH=/scratch/u/conda-envs_old", None),
        (
            "export CONDA_ENVS_PATH=/scratch/u/conda-envs/:$CONDA_ENVS_PATH",
            "export CONDA_ENVS_PATH=@E:$CONDA_ENVS_PATH",
        ),
        (
            "export CONDA_PKGS_DIRS='${SCRATCH}/conda-envs/pkgs,/gpfs/group/pkgs'",
            "export CONDA_PKGS_DIRS='${HOME}/.conda/pkgs,/gpfs/group/pkgs'",
        ),
        (
            "export CONDA_PKGS_DIRS='/scratch/u/pkgs,${SCRATCH}/conda-envs/pkgs'",
            "export CONDA_PKGS_DIRS='@P'",
        ),
        ("export CONDA_PKGS_DIRS=/gpfs/scratch/u/pkgs", None),
        (
            "export CONDA_ENVS_PATH=@E:/scratch/u/conda-envs",
            "export CONDA_ENVS_PATH=@E",
        ),
        ("export CONDA_ENVS_PATH=@E:@E", None),
        (
            "[ -n x ] && CONDA_PKGS_DIRS=$SCRATCH conda info",
            "[ -n x ] && CONDA_PKGS_DIRS=$HOME/.conda/pkgs conda info",
        ),
    ],
)
def test_rewrites_only_whole_migrated_paths(home, line, expected):
    def expand(text: str) -> bytes:
        envs, pkgs = home / ".conda/envs", home / ".conda/pkgs"
        return f"{text}\n".replace("@E", str(envs)).replace("@P", str(pkgs)).encode()

    (home / ".bashrc").write_bytes(expand(line))

    edits = [e for e in plan(home) if e.new != e.old]

    assert [e.new for e in edits] == ([] if expected is None else [expand(expected)])


def test_scratch_spelling_needs_scratch_in_environ(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate $SCRATCH/conda-envs/abc\n")
    layout = site(home)._replace(environ={})

    (edit,) = plan(home, layout)
    assert edit.new == edit.old
    line = "conda activate $SCRATCH/conda-envs/abc"
    assert edit.warnings == [
        f"line 1 still names /scratch/u/conda-envs/abc {UNREWRITTEN}: {line}"
    ]
    assert [e.new for e in plan(home)] == [b"conda activate $HOME/.conda/envs/abc\n"]


def test_a_cache_under_scratchs_real_path_moves_and_is_named(home, tmp_path):
    """``$SCRATCH`` is often a symlink, and a file may spell either path."""
    real = tmp_path / "gpfs" / "scratch-u"
    real.mkdir(parents=True)
    link = tmp_path / "scratch-u"
    link.symlink_to(real)
    pkgs = home / ".conda/pkgs"
    layout = Layout(
        [EnvMove(link / "envs/abc", home / ".conda/envs/abc")],
        [DirMove(link / "envs", home / ".conda/envs", pkgs)],
        {"SCRATCH": str(link)},
    )
    (home / ".condarc").write_text(f"pkgs_dirs:\n  - {real}/pkgs\n  - /opt/pkgs\n")

    (edit,) = plan(home, layout)

    assert edit.new == f"pkgs_dirs:\n  - {pkgs}\n  - /opt/pkgs\n".encode()
    assert edit.caches == [real / "pkgs"]
    assert edit.warnings == []


@pytest.mark.parametrize(
    ("entry", "warned"),
    [
        ("$SCRATCH/pkgs-$USER", True),
        ("${SCRATCH:-/tmp}/pkgs", True),
        ("/scratch/u/pkgs:$CONDA_PKGS_DIRS", True),
        ("/scratch/u2/pkgs-$USER", False),
        ("$SCRATCH_OLD/pkgs", False),
        ("$MY_CACHE", False),
        ("/scratch/u/pkgs", False),
    ],
)
def test_a_cache_on_scratch_the_run_cannot_read_is_a_warning(home, entry, warned):
    (home / ".condarc").write_text(f"# caches\npkgs_dirs:\n  - '{entry}'\n")
    (home / ".bashrc").write_text(f"export CONDA_PKGS_DIRS='{entry}'\n")

    edits = plan(home)

    left = "still names a package cache on scratch in a form this run does not rewrite"
    assert {e.path.name: e.warnings for e in edits} == (
        {
            ".bashrc": [f"line 1 {left}: {entry}"],
            ".condarc": [f"line 3 {left}: {entry}"],
        }
        if warned
        else {e.path.name: [] for e in edits}
    )


def test_a_scratch_holding_home_moves_no_cache(home):
    layout = Layout(
        [EnvMove(SCRATCH / "conda-envs/abc", home / ".conda/envs/abc")],
        [DirMove(SCRATCH / "conda-envs", home / ".conda/envs", home / ".conda/pkgs")],
        {"SCRATCH": str(home.parent)},
    )
    (home / ".condarc").write_text(f"pkgs_dirs:\n  - {home}/pkgs\n")

    assert plan(home, layout) == []


def test_symlinked_bashrc_is_edited_at_its_target(home):
    dotfiles = home / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "bashrc"
    real.write_bytes(b"# kept in git\nconda activate /scratch/u/conda-envs/abc\n")
    link = home / ".bashrc"
    link.symlink_to("dotfiles/bashrc")

    edits = plan(home)
    apply_rc_edits(edits, now=NOW)

    (edit,) = edits
    assert (edit.path, edit.target, edit.error) == (link, real, None)
    assert os.readlink(link) == "dotfiles/bashrc"
    assert (
        real.read_bytes()
        == f"# kept in git\nconda activate {home}/.conda/envs/abc\n".encode()
    )
    # The backup sits beside the link the user knows, not in the dotfiles repository.
    assert edit.backup == home / f".bashrc.conda-migrate-{STAMP}"
    assert not edit.backup.is_symlink()
    assert (
        edit.backup.read_bytes()
        == b"# kept in git\nconda activate /scratch/u/conda-envs/abc\n"
    )
    assert list(dotfiles.iterdir()) == [real]


def test_read_only_file_is_reported_and_others_still_written(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    bashrc.chmod(0o444)
    condarc = home / ".condarc"
    condarc.write_bytes(b"envs_dirs:\n  - /scratch/u/conda-envs\n")

    edits = plan(home)
    attempted = apply_rc_edits(edits, now=NOW)

    assert [e.path for e in attempted] == [bashrc, condarc]
    assert "read-only" in attempted[0].error
    assert attempted[0].backup is None
    assert attempted[0].diff  # still shown, so the user can apply it by hand
    assert bashrc.read_bytes() == b"conda activate /scratch/u/conda-envs/abc\n"
    assert mode(bashrc) == 0o444
    assert attempted[1].error is None
    assert condarc.read_bytes() == f"envs_dirs:\n  - {home}/.conda/envs\n".encode()
    assert sorted(p.name for p in home.iterdir()) == [
        ".bashrc",
        ".condarc",
        f".condarc.conda-migrate-{STAMP}",
    ]


@pytest.mark.parametrize(
    "name",
    [
        *(".bash_login", ".bash_aliases", ".zshenv", ".zprofile", ".zlogin"),
        *(".bashrc.d/conda", ".cshrc", ".tcshrc", ".login"),
        *(".config/fish/config.fish", ".config/fish/conf.d/conda.fish"),
        *("xdg/fish/config.fish", "xdg/fish/conf.d/conda.fish"),
        ".config/fish/functions/work.fish",
    ],
)
def test_every_file_a_shell_reads_at_login_is_pointed_at_the_new_place(home, name):
    """Not only .bashrc: bash reads .bash_login where there is no
    .bash_profile, Debian's .bashrc sources .bash_aliases and RHEL's every
    file in .bashrc.d, zsh reads .zshenv, .zprofile and .zlogin, csh and
    tcsh .cshrc (or .tcshrc) and .login, fish its config.fish and conf.d
    (under ``$XDG_CONFIG_HOME`` where set) and the functions ``funcsave``
    keeps; an activation in any of them breaks the next login (or the next
    use of the alias) once the old environment is gone."""
    rc = home / name
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_bytes(b"alias work='conda activate /scratch/u/conda-envs/abc'\n")
    layout = site(home)
    layout.environ["XDG_CONFIG_HOME"] = str(home / "xdg")

    (edit,) = apply_rc_edits(plan(home, layout), now=NOW)

    assert edit.error is None
    assert rc.read_bytes() == (
        f"alias work='conda activate {home}/.conda/envs/abc'\n".encode()
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_owner_is_kept(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    os.chown(bashrc, 4321, 8765)

    (edit,) = apply_rc_edits(plan(home), now=NOW)

    assert edit.error is None
    assert (bashrc.stat().st_uid, bashrc.stat().st_gid) == (4321, 8765)


ACTIVATE_OLD = b"conda activate /scratch/u/conda-envs/abc\n"


@pytest.fixture
def user_bashrc():
    """A ``.bashrc`` activating the old place, in a home of ``USER`` that a
    child dropped to that user can reach (pytest's directories are root's)."""
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o755)
        home = user_home(Path(base))
        (home / ".bashrc").write_bytes(ACTIVATE_OLD)
        yield home, home / ".bashrc"


def apply_as_user(home: Path, error: str | None) -> int:
    """Plan as root, apply as ``USER``: 0 when the edit ended with ``error``."""
    edits = plan(home)

    def apply() -> None:
        (edit,) = apply_rc_edits(edits, now=NOW)
        assert edit.error == error, edit.error

    return as_user(apply)


@pytest.mark.parametrize(
    ("before", "after"), [(0o644, 0o644), (0o640, 0o600), (0o664, 0o644)]
)
def test_a_group_the_user_cannot_give_becomes_theirs_and_opens_nothing(
    user_bashrc, before, after
):
    """An rc file root made for the user (group root): the user cannot give
    the new file that group, so it gets theirs, with no more access for it
    than everyone has. Left unchanged, it would activate at every login an
    environment the run has just removed."""
    home, bashrc = user_bashrc
    os.chown(bashrc, USER, 0)
    bashrc.chmod(before)

    assert apply_as_user(home, None) == 0

    assert bashrc.read_bytes() == f"conda activate {home}/.conda/envs/abc\n".encode()
    status = bashrc.stat()
    assert (status.st_uid, status.st_gid, mode(bashrc)) == (USER, USER, after)
    assert (home / f".bashrc.conda-migrate-{STAMP}").read_bytes() == ACTIVATE_OLD


def test_a_file_of_another_user_is_not_taken_over(user_bashrc):
    """Only the user's own file gets their group: another user's file that
    this one may write is left as it is, not replaced by one of theirs."""
    home, bashrc = user_bashrc
    os.chown(bashrc, OTHER_USER, 0)
    bashrc.chmod(0o666)

    refused = "not changed: [Errno 1] Operation not permitted"
    assert apply_as_user(home, refused) == 0

    assert bashrc.read_bytes() == ACTIVATE_OLD
    assert bashrc.stat().st_uid == OTHER_USER


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"envs_dirs: [/scratch/u/conda-envs\n", "left unchanged: while parsing"),
        (b"envs_dirs:\n  - /scratch/u/conda-envs\n\xff\n", "left unchanged: 'utf-8'"),
        (
            b"envs_dirs:\n  - &d /scratch/u/conda-envs\npkgs_dirs:\n  - *d\n",
            "shared through a YAML alias",
        ),
        (
            b"envs_dirs: &d\n  - /scratch/u/conda-envs\nenvs_path: *d\n",
            "shared through a YAML alias",
        ),
    ],
    ids=["invalid-yaml", "not-utf8", "aliased-entry", "aliased-list"],
)
def test_condarc_that_cannot_be_edited_safely_is_reported(home, content, message):
    condarc = home / ".condarc"
    condarc.write_bytes(content)

    edits = plan(home)

    assert [(e.path, e.old, e.new, e.diff) for e in edits] == [
        (condarc, content, content, "")
    ]
    assert message in edits[0].error
    assert apply_rc_edits(edits, now=NOW) == []
    assert condarc.read_bytes() == content
    assert list(home.iterdir()) == [condarc]


def test_unreadable_file_is_reported(home):
    (home / ".profile").symlink_to("dotfiles/missing")

    edits = plan(home)

    assert [(e.path, e.old, e.new) for e in edits] == [(home / ".profile", b"", b"")]
    assert edits[0].error.startswith("cannot be read:")
    assert apply_rc_edits(edits, now=NOW) == []


def test_every_condarc_location_is_edited_once(home, tmp_path):
    condarc = b"envs_dirs: [/scratch/u/conda-envs]\n"
    site_condarc = tmp_path / "site" / "condarc"
    xdg = tmp_path / "xdg"
    for path in (
        home / ".condarc",
        home / ".conda/condarc",
        site_condarc,
        xdg / "conda/.condarc",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(condarc)
    (home / ".config/conda").mkdir(parents=True)
    (home / ".config/conda/condarc").symlink_to(home / ".condarc")
    layout = site(home)
    layout.environ.update(CONDARC=str(site_condarc), XDG_CONFIG_HOME=str(xdg))

    edits = plan(home, layout)

    assert [e.path for e in edits] == [
        xdg / "conda/.condarc",
        home / ".config/conda/condarc",
        home / ".conda/condarc",
        site_condarc,
    ]
    assert {e.new for e in edits} == {f"envs_dirs: [{home}/.conda/envs]\n".encode()}


def test_condarc_d_files_are_read_as_conda_reads_them(home, tmp_path):
    """conda reads a ``condarc.d`` directory's ``*.yml`` and ``*.yaml``
    files, hidden ones too, in the order of their names, after the plain
    files beside it; a ``$CONDARC`` that is a directory the same way."""
    condarc = b"envs_dirs: [/scratch/u/conda-envs]\n"
    xdg, given = tmp_path / "xdg", tmp_path / "given"
    elsewhere = tmp_path / "dotfiles/conda.yml"
    read = [
        xdg / "conda/condarc.d/b.yaml",
        home / ".config/conda/condarc",
        home / ".config/conda/condarc.d/.a.yml",
        home / ".config/conda/condarc.d/b.yml",
        home / ".conda/condarc.d/linked.yml",
        home / ".condarc",
        given / "site.yml",
    ]
    for path in (*read, elsewhere, home / ".conda/condarc.d/notes.txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(condarc)
    (home / ".conda/condarc.d/linked.yml").unlink()
    (home / ".conda/condarc.d/linked.yml").symlink_to(elsewhere)
    (home / ".conda/condarc.d/sub.yml").mkdir()
    (home / ".conda/condarc.d/sub.yml/deeper.yml").write_bytes(condarc)
    layout = site(home)
    layout.environ.update(CONDARC=str(given), XDG_CONFIG_HOME=str(xdg))

    edits = plan(home, layout)

    assert [(e.path, e.error) for e in edits] == [(path, None) for path in read]
    assert edits[4].target == elsewhere
    assert {e.new for e in edits} == {f"envs_dirs: [{home}/.conda/envs]\n".encode()}
    apply_rc_edits(edits, now=NOW)
    # A backup's name ends in no suffix conda reads.
    backups = sorted((home / ".config/conda/condarc.d").iterdir())
    assert [b.name for b in backups] == [
        ".a.yml",
        f".a.yml.conda-migrate-{STAMP}",
        "b.yml",
        f"b.yml.conda-migrate-{STAMP}",
    ]
    assert plan(home, layout) == []


def test_kernels_in_every_jupyter_data_dir_that_use_a_moved_env(home, tmp_path):
    def kernel(directory: Path, name: str, spec: str) -> Path:
        path = directory / "kernels" / name / "kernel.json"
        path.parent.mkdir(parents=True)
        path.write_text(spec)
        return path

    data_dir, first, second = tmp_path / "data", tmp_path / "jp1", tmp_path / "jp2"
    by_argv = kernel(
        data_dir, "abc", '{"argv": ["/scratch/u/conda-envs/abc/bin/python"]}'
    )
    kernel(first, "abcd", '{"argv": ["/scratch/u/conda-envs/abcd/bin/python"]}')
    by_env = kernel(
        second,
        "r",
        '{"argv": ["R"], "env": {"R_LIBS": "/scratch/u/myenvs/hdf/lib/R/library"}}',
    )
    kernel(second, "label", '{"argv": ["R"], "display_name": "/scratch/u/myenvs/hdf"}')
    layout = site(home)
    layout.environ.update(
        JUPYTER_DATA_DIR=str(data_dir), JUPYTER_PATH=f"{first}{os.pathsep}{second}"
    )

    edits = plan(home, layout)

    assert [(e.path, e.error) for e in edits] == [(by_argv, None), (by_env, None)]
    assert (
        edits[1].new
        == (
            f'{{"argv": ["R"], "env": {{"R_LIBS": "{home}/.conda/envs/hdf/lib/R/library"}}}}'
        ).encode()
    )


def test_kernel_naming_env_in_escaped_form_is_reported(home):
    path = home / ".local/share/jupyter/kernels/abc/kernel.json"
    path.parent.mkdir(parents=True)
    spec = b'{"argv": ["\\/scratch\\/u\\/conda-envs\\/abc\\/bin\\/python"]}'
    path.write_bytes(spec)

    edits = plan(home)

    assert [(e.path, e.new) for e in edits] == [(path, spec)]
    assert "cannot be rewritten" in edits[0].error


def test_file_changed_after_planning_is_left_alone(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    edits = plan(home)
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\nalias x=y\n")

    (edit,) = apply_rc_edits(edits, now=NOW)

    assert "changed since it was read" in edit.error
    assert (
        bashrc.read_bytes() == b"conda activate /scratch/u/conda-envs/abc\nalias x=y\n"
    )
    assert list(home.iterdir()) == [bashrc]


def test_hard_linked_file_is_left_alone(home, tmp_path):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    os.link(bashrc, tmp_path / "dotfiles-bashrc")

    (edit,) = apply_rc_edits(plan(home), now=NOW)

    assert "2 hard links" in edit.error
    assert bashrc.read_bytes() == b"conda activate /scratch/u/conda-envs/abc\n"
    assert bashrc.stat().st_nlink == 2


def test_failed_write_leaves_file_and_no_temporary(home, monkeypatch):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    edits = plan(home)

    def fail(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    (edit,) = apply_rc_edits(edits, now=NOW)

    assert "No space left on device" in edit.error
    assert bashrc.read_bytes() == b"conda activate /scratch/u/conda-envs/abc\n"
    assert sorted(home.iterdir()) == [bashrc, edit.backup]


def test_backup_never_overwrites_an_earlier_one(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    earlier = home / f".bashrc.conda-migrate-{STAMP}"
    earlier.write_bytes(b"an earlier backup\n")

    (edit,) = apply_rc_edits(plan(home), now=NOW)

    assert edit.backup == home / f".bashrc.conda-migrate-{STAMP}.1"
    assert edit.backup.read_bytes() == b"conda activate /scratch/u/conda-envs/abc\n"
    assert earlier.read_bytes() == b"an earlier backup\n"


def test_files_without_migrated_paths_are_not_listed(home):
    (home / ".bashrc").write_bytes(
        b'eval "$(/scratch/u/miniconda3/bin/conda shell.bash hook)"\n'
        b"conda activate /scratch/u/conda-envs/amd\n"
    )
    (home / ".condarc").write_bytes(b"envs_dirs:\n  - /scratch/u/myenvs\n")

    assert plan(home) == []


def test_backup_is_private_whatever_the_umask(home):
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"conda activate /scratch/u/conda-envs/abc\n")
    edits = plan(home)

    previous = os.umask(0o277)
    try:
        (edit,) = apply_rc_edits(edits, now=NOW)
    finally:
        os.umask(previous)

    assert mode(edit.backup) == 0o600


def test_condarc_destination_is_quoted_where_plain_would_not_parse(home):
    condarc = home / ".condarc"
    condarc.write_bytes(b"envs_dirs:\n  - /scratch/u/conda-envs  # note\n")
    layout = site(home)
    layout.dir_moves[:] = [
        DirMove(SCRATCH / "conda-envs", home / "my envs #1", home / "pkgs")
    ]

    (edit,) = plan(home, layout)

    assert edit.new == f"envs_dirs:\n  - '{home}/my envs #1'  # note\n".encode()


def test_condarc_edit_that_would_change_anything_else_is_refused(home, monkeypatch):
    condarc = home / ".condarc"
    content = b"envs_dirs:\n  - /scratch/u/conda-envs\nchannels: [conda-forge]\n"
    condarc.write_bytes(content)
    monkeypatch.setattr(condarc_text, "_yaml_scalar", lambda value, style: "[/x]")

    (edit,) = plan(home)

    assert (edit.old, edit.new) == (content, content)
    assert "without changing other settings" in edit.error


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("/scratch/u/conda-envs", "@E"),
        ("'/scratch/u/conda-envs'", "'@E'"),
        ('"/scratch/u/conda-envs"', '"@E"'),
        ("!!str /scratch/u/conda-envs", "!!str @E"),
        ("&envs '/scratch/u/conda-envs/'", "&envs '@E'"),
        ("$SCRATCH/conda-envs", "$HOME/.conda/envs"),
        ("${SCRATCH}/conda-envs", "${HOME}/.conda/envs"),
    ],
)
def test_condarc_entry_keeps_its_style(home, entry, expected):
    condarc = home / ".condarc"
    condarc.write_text(f"envs_dirs:\n- {entry}\n")

    (edit,) = plan(home)

    envs = str(home / ".conda/envs")
    assert edit.new == f"envs_dirs:\n- {expected.replace('@E', envs)}\n".encode()


@pytest.mark.parametrize(
    "content", [b"", b"# nothing yet\n", b"- /scratch/u/conda-envs\n", b"envs\n"]
)
def test_condarc_without_settings_is_not_listed(home, content):
    (home / ".condarc").write_bytes(content)

    assert plan(home) == []


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["export MY_ENV=/scratch/$USER/conda-envs/abc"],
            ["export MY_ENV=$HOME/.conda/envs/abc"],
        ),
        (
            ['conda activate "$SCRATCH"/conda-envs/abc'],
            ['conda activate "$HOME"/.conda/envs/abc'],
        ),
        (
            ['PATH="${SCRATCH}"/conda-envs/abc/bin:$PATH'],
            ['PATH="${HOME}"/.conda/envs/abc/bin:$PATH'],
        ),
        (
            ['source "/scratch/${USER}/conda-envs/abc/etc/x.sh"  # env vars'],
            ['source "${HOME}/.conda/envs/abc/etc/x.sh"  # env vars'],
        ),
        (
            ["conda activate '/scratch/u/conda-envs'/abc"],
            ["conda activate '@E/abc'"],
        ),
        (
            ["conda activate $SCRATCH/'conda-envs/abc'/bin"],
            ["conda activate $HOME'/.conda/envs/abc'/bin"],
        ),
        (
            ["ENVS=$SCRATCH/conda-envs", "conda activate $ENVS/abc"],
            ["ENVS=$SCRATCH/conda-envs", "conda activate $HOME/.conda/envs/abc"],
        ),
        (
            ['ENVS="$SCRATCH/conda-envs"; conda activate "$ENVS/abc"'],
            ['ENVS="$SCRATCH/conda-envs"; conda activate "$HOME/.conda/envs/abc"'],
        ),
        (
            # A backslash is a character inside single quotes: the quote ends.
            ["echo 'C:\\' \"$SCRATCH\"/conda-envs/abc"],
            ["echo 'C:\\' \"$HOME\"/.conda/envs/abc"],
        ),
        (
            # bash's $'...' escapes a quote inside: the quote goes on.
            ["echo $'it\\'s' \"$SCRATCH\"/conda-envs/abc"],
            ["echo $'it\\'s' \"$HOME\"/.conda/envs/abc"],
        ),
    ],
)
def test_variables_and_quotes_are_read_as_the_shell_reads_them(home, lines, expected):
    """``$USER`` inside a path, a quoted ``"$SCRATCH"``, a variable the file
    itself sets: each expands to the old prefix when the shell reads it, so
    it is rewritten, in the same manner, and no other byte changes."""
    envs = home / ".conda/envs"
    layout = site(home)
    layout = layout._replace(environ={**layout.environ, "USER": "u"})
    before = (
        "# .bashrc\n" + "".join(f"{line}\n" for line in lines) + "alias ll='ls -l'\n"
    )
    (home / ".bashrc").write_text(before)

    (edit,) = plan(home, layout)

    assert (
        edit.new.decode()
        == "# .bashrc\n"
        + "".join(f"{line}\n".replace("@E", str(envs)) for line in expected)
        + "alias ll='ls -l'\n"
    )
    assert edit.warnings == []


UNREWRITTEN = "in a form this run does not rewrite"


def test_a_line_still_naming_the_old_prefix_is_a_warning_with_its_line(home):
    """A variable this run cannot know (set by a module, or after the
    line): the line would still name the removed prefix once the shell
    expands it, so it is listed with its file and line number."""
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "# .bashrc\n"
        "conda activate $MYSCR/conda-envs/abc\n"
        "conda activate /scratch/u/conda-envs/abc\n"
        "ls ${SCRATCH:-/tmp}/myenvs/hdf/bin\n"
        "echo /scratch/u/conda-envs/abcd\n"
    )

    (edit,) = plan(home)

    assert edit.new.decode().splitlines()[2] == (
        f"conda activate {home}/.conda/envs/abc"
    )
    abc, hdf = "/scratch/u/conda-envs/abc", "/scratch/u/myenvs/hdf"
    assert edit.warnings == [
        f"line 2 still names {abc} {UNREWRITTEN}: conda activate $MYSCR/conda-envs/abc",
        f"line 4 still names {hdf} {UNREWRITTEN}: ls ${{SCRATCH:-/tmp}}/myenvs/hdf/bin",
    ]


def test_a_file_with_only_warnings_is_listed_and_left_as_it_is(home):
    bashrc = home / ".bashrc"
    bashrc.write_text('conda activate "$MYSCR/conda-envs/abc"\n')

    (edit,) = plan(home)

    assert edit.new == edit.old and edit.diff == "" and edit.error is None
    assert [w.split(":")[0] for w in edit.warnings] == [
        f"line 1 still names /scratch/u/conda-envs/abc {UNREWRITTEN}"
    ]
    assert apply_rc_edits([edit], now=NOW) == []
    assert bashrc.read_text() == 'conda activate "$MYSCR/conda-envs/abc"\n'


def test_only_what_the_skeletons_loop_sources_in_bashrc_d_is_read(home, tmp_path):
    """``for rc in ~/.bashrc.d/*; do if [ -f "$rc" ]`` sources regular files
    and links to them, not hidden ones, directories, dangling links or
    pipes (which reading would block on). A linked file is edited where it
    lies, its backup hidden beside the link."""
    sourced = home / ".bashrc.d"
    (sourced / "dir").mkdir(parents=True)
    (sourced / "dir/inner").write_bytes(ACTIVATE_OLD)
    (sourced / ".hidden").write_bytes(ACTIVATE_OLD)
    (sourced / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(sourced / "pipe")
    dotfile = tmp_path / "dotfiles/conda.sh"
    dotfile.parent.mkdir()
    dotfile.write_bytes(ACTIVATE_OLD)
    (sourced / "conda.sh").symlink_to(dotfile)

    (edit,) = apply_rc_edits(plan(home), now=NOW)

    assert (edit.path, edit.target, edit.error) == (sourced / "conda.sh", dotfile, None)
    assert dotfile.read_text() == f"conda activate {home}/.conda/envs/abc\n"
    assert edit.backup == sourced / f".conda.sh.conda-migrate-{STAMP}"
    assert edit.backup.read_bytes() == ACTIVATE_OLD
    for name in ("dir/inner", ".hidden"):
        assert (sourced / name).read_bytes() == ACTIVATE_OLD


@pytest.mark.parametrize(
    ("zshenv", "environ", "zdotdir"),
    [
        ("", {"ZDOTDIR": "@HOME/zsh"}, "zsh"),
        ('export ZDOTDIR="$HOME/.config/zsh"\n', {}, ".config/zsh"),
        ("ZDOTDIR=~/.zsh\n", {"ZDOTDIR": "@HOME/elsewhere"}, ".zsh"),
        ('export ZDOTDIR="${XDG_CONFIG_HOME:-$HOME/.config}/zsh"\n', {}, ".config/zsh"),
        (
            'export ZDOTDIR="${XDG_CONFIG_HOME:-$HOME/.config}/zsh"\n',
            {"XDG_CONFIG_HOME": "@HOME/xdg"},
            "xdg/zsh",
        ),
    ],
)
def test_zsh_files_are_read_where_zdotdir_says(home, zshenv, environ, zdotdir):
    """zsh reads ``.zprofile``, ``.zshrc`` and ``.zlogin`` from ``$ZDOTDIR``,
    which ``~/.zshenv`` usually sets, and ``conda init zsh`` writes there;
    where it is set in a form the run cannot read, the usual places count."""
    (home / ".zshenv").write_text(zshenv)
    zshrc = home / zdotdir / ".zshrc"
    zshrc.parent.mkdir(parents=True)
    zshrc.write_bytes(ACTIVATE_OLD)
    layout = site(home)
    layout.environ.update(
        {k: v.replace("@HOME", str(home)) for k, v in environ.items()}
    )

    (edit,) = apply_rc_edits(plan(home, layout), now=NOW)

    assert (edit.path, edit.error) == (zshrc, None)
    assert zshrc.read_text() == f"conda activate {home}/.conda/envs/abc\n"


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        (".bashrc", r'"$SCRATCH/conda-envs/x\$y\`z"', r'"$HOME/.conda/envs/x\$y\`z"'),
        (
            ".cshrc",
            r'"$SCRATCH/conda-envs/x"\$"y"\`"z"',
            r'"$HOME/.conda/envs/x"\$"y"\`"z"',
        ),
        (
            ".config/fish/config.fish",
            r'"$SCRATCH/conda-envs/x\$y`z"',
            r'"$HOME/.conda/envs/x\$y`z"',
        ),
    ],
)
def test_a_new_path_in_double_quotes_is_escaped_as_its_shell_reads_it(
    home, name, line, expected
):
    """Inside double quotes sh takes a backslash before ``$`` and a backquote;
    csh takes none (the quote closes around it), fish none before a backquote,
    which it does not expand."""
    layout = site(home)
    env = "x$y`z"
    layout.env_moves.append(
        EnvMove(SCRATCH / "conda-envs" / env, home / f".conda/envs/{env}")
    )
    rc = home / name
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_text(f"conda activate {line}\n")

    (edit,) = plan(home, layout)

    assert edit.new.decode() == f"conda activate {expected}\n"
    assert edit.warnings == []


def modulefile(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_modulefiles_the_user_keeps_are_pointed_at_the_new_place(home, tmp_path):
    """Lmod's ``.lua`` and Tcl ``#%Module`` files in ``~/modulefiles``,
    ``~/privatemodules`` (Environment Modules' ``use.own``), a ``$MODULEPATH``
    directory inside the home and one a login file adds with ``module use``:
    the old prefix, as a whole path, becomes the new one; a path the module
    builds from ``$SCRATCH`` is named with its line, since in Tcl ``$HOME``
    is no variable of the file's; files no module command loads stay."""
    new = home / ".conda/envs"
    lua = modulefile(
        home / "modulefiles/abc/1.0.lua",
        "-- my env\n"
        'prepend_path("PATH", "/scratch/u/conda-envs/abc/bin")\n'
        'setenv("CONDA_PREFIX", "/scratch/u/conda-envs/abc")\n'
        'prepend_path("PATH", "/scratch/u/conda-envs/abcd/bin")\n'
        'source_sh("bash", "/scratch/u/conda-envs/abc/bin/activate")\n',
    )
    tcl = modulefile(
        home / "privatemodules/hdf",
        "#%Module1.0\n"
        "prepend-path PATH /scratch/u/myenvs/hdf/bin\n"
        "setenv HDF {/scratch/u/myenvs/hdf}\n"
        "prepend-path LD_LIBRARY_PATH $env(SCRATCH)/myenvs/hdf/lib\n",
    )
    on_path = modulefile(
        home / "sw/modules/tool/2.lua",
        'prepend_path("PATH", pathJoin(os.getenv("SCRATCH"), "conda-envs/abc/bin"))\n',
    )
    used = modulefile(
        home / "my mods/hdf/1",
        "#%Module\nprepend-path PATH /scratch/u/myenvs/hdf/bin\n",
    )
    (home / ".bashrc").write_text('module use "$HOME/my mods"\n')
    left = {
        # No module command reads these: no .lua name, no #%Module line.
        home / "modulefiles/abc/README": "/scratch/u/conda-envs/abc/bin\n",
        # Hidden: a backup, or a version only loaded by its full name.
        home / "modulefiles/abc/.0.9.lua": '"/scratch/u/conda-envs/abc/bin"\n',
        # The site's, outside the home: not the user's to change.
        tmp_path / "site/modules/abc.lua": '"/scratch/u/conda-envs/abc/bin"\n',
    }
    for path, text in left.items():
        modulefile(path, text)
    layout = site(home)
    layout.environ["MODULEPATH"] = f"{home}/sw/modules:{tmp_path}/site/modules"

    edits = plan(home, layout)

    assert [(e.path, e.error) for e in edits] == [
        (on_path, None),
        (used, None),
        (lua, None),
        (tcl, None),
    ]
    on_path_edit, used_edit, lua_edit, tcl_edit = edits
    assert used_edit.new == f"#%Module\nprepend-path PATH {new}/hdf/bin\n".encode()
    assert lua.read_text() == lua_edit.old.decode()
    assert lua_edit.new.decode() == (
        "-- my env\n"
        f'prepend_path("PATH", "{new}/abc/bin")\n'
        f'setenv("CONDA_PREFIX", "{new}/abc")\n'
        'prepend_path("PATH", "/scratch/u/conda-envs/abcd/bin")\n'
        f'source_sh("bash", "{new}/abc/bin/activate")\n'
    )
    assert tcl_edit.new.decode() == (
        "#%Module1.0\n"
        f"prepend-path PATH {new}/hdf/bin\n"
        f"setenv HDF {{{new}/hdf}}\n"
        "prepend-path LD_LIBRARY_PATH $env(SCRATCH)/myenvs/hdf/lib\n"
    )
    left_as_is = "in a form this run does not rewrite"
    tcl_line = "prepend-path LD_LIBRARY_PATH $env(SCRATCH)/myenvs/hdf/lib"
    assert tcl_edit.warnings == [
        f"line 4 still names /scratch/u/myenvs/hdf {left_as_is}: {tcl_line}"
    ]
    assert (on_path_edit.new, on_path_edit.diff) == (on_path_edit.old, "")
    lua_line = on_path.read_text().rstrip()
    assert on_path_edit.warnings == [
        f"line 1 still names /scratch/u/conda-envs/abc {left_as_is}: {lua_line}"
    ]
    assert lua_edit.warnings == []

    apply_rc_edits(edits, now=NOW)

    # Hidden backups: Lmod lists no module, and loads no version, named so.
    assert sorted(p.name for p in lua.parent.iterdir()) == [
        ".0.9.lua",
        f".1.0.lua.conda-migrate-{STAMP}",
        "1.0.lua",
        "README",
    ]
    assert (tcl.parent / f".hdf.conda-migrate-{STAMP}").read_bytes() == tcl_edit.old
    for path, text in left.items():
        assert path.read_text() == text


def test_a_modulefile_cannot_hold_a_new_place_with_a_space_unquoted(home):
    """Tcl splits a word at a space, and a Lua string ends at a quote: the
    file is left as it is, and its lines are named for the user to change."""
    lua = modulefile(
        home / "modulefiles/abc/1.0.lua",
        'whatis("abc")\nprepend_path("PATH", "/scratch/u/conda-envs/abc/bin")\n',
    )
    layout = site(home)
    moved = [EnvMove(SCRATCH / "conda-envs/abc", home / "my envs/abc")]

    (edit,) = plan_rc_edits(moved, [], home, layout.environ)

    assert (edit.path, edit.new, edit.diff) == (lua, edit.old, "")
    assert edit.error == (
        f"left unchanged: line 2 names /scratch/u/conda-envs/abc, whose new place "
        f"{home}/my envs/abc a modulefile cannot hold as it is written: change it "
        "by hand"
    )


def test_a_modulefile_keeps_its_spelling_of_the_home(home):
    """``~`` and ``$HOME`` stay as written (Lmod expands neither in a string,
    Tcl's ``$HOME`` is the file's variable: the same before and after);
    ``$SCRATCH`` would become a variable the file may not set, so that line
    is a warning. ``ml use`` and a ``MODULEPATH=`` in a login file add
    their directories."""
    layout = scratch_in_home(home)
    lua = modulefile(
        home / "mods/abc/1.lua",
        'prepend_path("PATH", "~/scratch/envs/abc/bin")\n'
        'set_alias("go", "conda activate $HOME/scratch/envs/abc")\n',
    )
    tcl = modulefile(
        home / "more/abc",
        "#%Module\nset SCRATCH $env(SCRATCH)\nprepend-path PATH $SCRATCH/envs/abc/bin\n",
    )
    csh = modulefile(
        home / "cmods/abc.lua", 'setenv("ABC", "$HOME/scratch/envs/abc")\n'
    )
    (home / ".zshrc").write_text(
        "ml use ~/mods\nexport MODULEPATH=$HOME/more:$MODULEPATH\n"
    )
    (home / ".cshrc").write_text("module use ~/cmods\n")
    (home / "mods/abc/loop").symlink_to("..")  # walked once

    edits = plan(home, layout)

    assert [(e.path, e.error) for e in edits] == [
        (lua, None),
        (tcl, None),
        (csh, None),
    ]
    assert edits[2].new == b'setenv("ABC", "$HOME/.conda/envs/abc")\n'
    assert edits[0].new == (
        b'prepend_path("PATH", "~/.conda/envs/abc/bin")\n'
        b'set_alias("go", "conda activate $HOME/.conda/envs/abc")\n'
    )
    assert edits[0].warnings == []
    warning = (
        f"line 3 still names {home}/scratch/envs/abc in a form this run does "
        "not rewrite: prepend-path PATH $SCRATCH/envs/abc/bin"
    )
    assert (edits[1].new, edits[1].warnings) == (edits[1].old, [warning])


def test_a_modulefile_setting_condas_directories_follows_them(home):
    """A module that sets ``CONDA_ENVS_PATH`` (``CONDA_ENVS_DIRS``,
    ``CONDA_PKGS_DIRS``) to the directory the run empties keeps conda
    creating environments and caching packages there after ``module
    load``: its entries move as a condarc's do; one built from ``$SCRATCH``
    is a warning with its line."""
    new = home / ".conda"
    lua = modulefile(
        home / "modulefiles/myconda/1.lua",
        'setenv("CONDA_ENVS_PATH", "/scratch/u/conda-envs")\n'
        "prepend_path{'CONDA_ENVS_DIRS', '/scratch/u/conda-envs/', delim=':'}\n"
        'pushenv("CONDA_PKGS_DIRS", "/scratch/u/pkgs,/opt/site/pkgs")\n'
        'setenv("CONDA_PKGS_DIRS", pathJoin(os.getenv("SCRATCH"), "pkgs"))\n',
    )
    tcl = modulefile(
        home / "privatemodules/myconda",
        "#%Module\n"
        "setenv CONDA_ENVS_PATH /scratch/u/conda-envs:/scratch/u/other\n"
        'append-path CONDA_PKGS_DIRS "/scratch/u/conda-envs/pkgs"\n'
        "setenv CONDA_PKGS_DIRS {/scratch/u/pkgs}\n"
        "setenv CONDA_PKGS_DIRS $env(SCRATCH)/pkgs\n",
    )

    edits = plan(home, site(home))

    assert [(e.path, e.error) for e in edits] == [(lua, None), (tcl, None)]
    assert edits[0].new.decode() == (
        f'setenv("CONDA_ENVS_PATH", "{new}/envs")\n'
        f"prepend_path{{'CONDA_ENVS_DIRS', '{new}/envs', delim=':'}}\n"
        f'pushenv("CONDA_PKGS_DIRS", "{new}/pkgs,/opt/site/pkgs")\n'
        'setenv("CONDA_PKGS_DIRS", pathJoin(os.getenv("SCRATCH"), "pkgs"))\n'
    )
    assert edits[1].new.decode() == (
        "#%Module\n"
        f"setenv CONDA_ENVS_PATH {new}/envs:/scratch/u/other\n"
        f'append-path CONDA_PKGS_DIRS "{new}/pkgs"\n'
        f"setenv CONDA_PKGS_DIRS {{{new}/pkgs}}\n"
        "setenv CONDA_PKGS_DIRS $env(SCRATCH)/pkgs\n"
    )
    left = "sets a conda directory on scratch in a form this run does not rewrite"
    assert [edit.warnings for edit in edits] == [
        [f"line 4 {left}: " + lua.read_text().splitlines()[3]],
        [f"line 5 {left}: setenv CONDA_PKGS_DIRS $env(SCRATCH)/pkgs"],
    ]
    # What the run says of the caches it points away from.
    assert [edit.caches for edit in edits] == [
        [SCRATCH / "pkgs"],
        [SCRATCH / "conda-envs/pkgs", SCRATCH / "pkgs"],
    ]


def test_a_modulefile_directory_spelled_from_home_keeps_its_spelling(home):
    """Lmod hands the string to conda, which expands ``$HOME`` itself: the
    new entry is spelled as the old one was."""
    lua = modulefile(
        home / "modulefiles/myconda/1.lua",
        'setenv("CONDA_ENVS_PATH", "$HOME/scratch/envs")\n',
    )

    (edit,) = plan(home, scratch_in_home(home))

    assert (edit.path, edit.error) == (lua, None)
    assert edit.new == b'setenv("CONDA_ENVS_PATH", "$HOME/.conda/envs")\n'


def test_a_modulefile_cannot_hold_a_new_directory_with_a_space(home):
    tcl = modulefile(
        home / "privatemodules/myconda",
        "#%Module\nsetenv CONDA_ENVS_PATH /scratch/u/conda-envs\n",
    )
    moves = [DirMove(SCRATCH / "conda-envs", home / "my envs", home / "pkgs")]

    (edit,) = plan_rc_edits([], moves, home, {})

    assert (edit.path, edit.new) == (tcl, edit.old)
    assert edit.error == (
        "left unchanged: line 2 sets CONDA_ENVS_PATH to a directory whose new "
        "place a modulefile cannot hold as it is written: change it by hand"
    )
