"""Every startup file a login reads names the new place after a run: not only
bash's and zsh's own, but the files RHEL's skeleton ``.bashrc`` sources
from ``~/.bashrc.d``, csh's and tcsh's, and fish's.

An activation (or a ``PATH`` entry) left in any of them names a removed
environment at the next login. No csh, tcsh or fish is installed where these
tests run, so their files are checked byte for byte; bash is run for real.
"""

from __future__ import annotations

import subprocess

#: What the ``.bashrc`` of RHEL 9's ``/etc/skel`` does with ``~/.bashrc.d``.
SKELETON_BASHRC = """\
# .bashrc
if [ -d ~/.bashrc.d ]; then
    for rc in ~/.bashrc.d/*; do
        if [ -f "$rc" ]; then
            . "$rc"
        fi
    done
fi
unset rc
"""

RUN = ("--all", "--no-clean")
UNREWRITTEN = "in a form this run does not rewrite"


def login_path(home, scratch):
    """``PATH`` as a bash login with the skeleton ``.bashrc`` sets it."""
    run = subprocess.run(
        ["bash", "-c", '. ~/.bashrc; printf %s "$PATH"'],
        env={"HOME": str(home), "SCRATCH": str(scratch.root), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def test_files_in_bashrc_d_are_rewritten_and_their_backups_not_sourced(
    scratch, home, migrate
):
    """The skeleton sources every file in ``~/.bashrc.d`` that is not
    hidden, whatever its name: a backup beside the file, named as the
    others are, would put the old environment back on ``PATH``."""
    write(home / ".bashrc", SKELETON_BASHRC)
    conda_sh = write(
        home / ".bashrc.d/conda.sh",
        '# my env, as the site guide says\nexport PATH="$SCRATCH/conda-envs/abc/bin:$PATH"\n',
    )
    modules = write(home / ".bashrc.d/modules", f"conda activate {scratch.amd}\n")
    hidden = write(home / ".bashrc.d/.old", f"conda activate {scratch.amd}\n")
    assert login_path(home, scratch) == f"{scratch.abc}/bin:/usr/bin"

    out, err, code = migrate("-d", scratch.envs_dir, *RUN)

    assert code == 0, out + err
    assert conda_sh.read_bytes() == (
        b"# my env, as the site guide says\n"
        b'export PATH="$HOME/.conda/envs/abc/bin:$PATH"\n'
    )
    assert modules.read_text() == f"conda activate {home}/.conda/envs/amd\n"
    assert login_path(home, scratch) == f"{home}/.conda/envs/abc/bin:/usr/bin"
    # Not sourced, so not read: the run edits what the shell reads.
    assert hidden.read_text() == f"conda activate {scratch.amd}\n"
    backups = sorted(p.name for p in (home / ".bashrc.d").iterdir())
    assert [name.split(".conda-migrate-")[0] for name in backups] == [
        ".conda.sh",
        ".modules",
        ".old",
        "conda.sh",
        "modules",
    ]
    assert f"Updated {conda_sh} (backup: {home}/.bashrc.d/.conda.sh." in out


def test_csh_and_tcsh_files_are_rewritten_by_csh_rules(scratch, home, migrate):
    """csh reads ``~/.cshrc`` and ``~/.login``; tcsh ``~/.tcshrc`` (or
    ``~/.cshrc``) and ``~/.login``. Variables are set with ``setenv`` and
    ``set``, and ``$NAME:h`` is a modifier, not a path. Comments and
    heredocs are rewritten, as in bash's files."""
    envs = scratch.envs_dir
    cshrc = write(
        home / ".cshrc",
        "# .cshrc\n"
        "source /opt/miniconda3/etc/profile.d/conda.csh\n"
        'setenv ENVS "$SCRATCH/conda-envs"\n'
        "conda activate $ENVS/abc   # my env\n"
        "conda activate $ENVS:h/conda-envs/amd\n"
        f"setenv CONDA_ENVS_PATH {envs}:/opt/site/envs\n"
        f"# conda activate {scratch.amd}\n"
        "cat > ~/job.csh << EOF\n"
        "conda activate $SCRATCH/conda-envs/abc\n"
        "EOF\n",
    )
    tcshrc = write(
        home / ".tcshrc",
        "set path = ( ${SCRATCH}/conda-envs/abc/bin $path )\n"
        f"alias work 'conda activate {scratch.amd}'\n"
        "set e = $SCRATCH/conda-envs ; conda activate ${e}/amd\n",
    )
    login = write(home / ".login", f"setenv PATH {scratch.abc}/bin:$PATH\n")

    out, err, code = migrate("-d", envs, *RUN)

    assert code == 0, out + err
    new = home / ".conda/envs"
    assert cshrc.read_text() == (
        "# .cshrc\n"
        "source /opt/miniconda3/etc/profile.d/conda.csh\n"
        'setenv ENVS "$SCRATCH/conda-envs"\n'
        "conda activate $HOME/.conda/envs/abc   # my env\n"
        "conda activate $ENVS:h/conda-envs/amd\n"
        f"setenv CONDA_ENVS_PATH {new}:/opt/site/envs\n"
        f"# conda activate {new}/amd\n"
        "cat > ~/job.csh << EOF\n"
        "conda activate $HOME/.conda/envs/abc\n"
        "EOF\n"
    )
    assert tcshrc.read_text() == (
        "set path = ( ${HOME}/.conda/envs/abc/bin $path )\n"
        f"alias work 'conda activate {new}/amd'\n"
        "set e = $SCRATCH/conda-envs ; conda activate ${HOME}/.conda/envs/amd\n"
    )
    assert login.read_text() == f"setenv PATH {new}/abc/bin:$PATH\n"
    assert (
        f"warning: {cshrc}: line 5 still names {scratch.amd} {UNREWRITTEN}: "
        "conda activate $ENVS:h/conda-envs/amd\n" in out
    ), out
    assert sorted(p.name.split(".conda-migrate-")[0] for p in home.glob(".*sh*")) == [
        ".cshrc",
        ".cshrc",
        ".tcshrc",
        ".tcshrc",
    ]


def test_fish_files_are_rewritten_by_fish_rules(scratch, home, migrate):
    """fish reads ``config.fish`` and every ``conf.d/*.fish``; it sets
    variables with ``set``, writes ``{$NAME}`` where sh writes ``${NAME}``,
    indexes lists with ``$NAME[1]`` and escapes ``\\'`` inside single quotes."""
    fish = home / ".config/fish"
    config = write(
        fish / "config.fish",
        "# config.fish\n"
        "if status is-interactive\n"
        "    set -gx ENVS $SCRATCH/conda-envs\n"
        "    conda activate $ENVS/abc\n"
        "    conda activate {$SCRATCH}/conda-envs/amd\n"
        "    conda activate $SCRATCH[1]/conda-envs/amd\n"
        "end\n"
        f"set -gx CONDA_PKGS_DIRS {scratch.envs_dir}/pkgs\n",
    )
    conf_d = write(
        fish / "conf.d/conda.fish",
        f"fish_add_path {scratch.abc}/bin\n"
        'set -gx MYENV "$SCRATCH"/conda-envs/abc\n'
        "echo 'it\\'s' \"$SCRATCH\"/conda-envs/amd\n",
    )
    other = write(fish / "conf.d/notes.txt", f"{scratch.abc}\n")

    out, err, code = migrate("-d", scratch.envs_dir, *RUN)

    assert code == 0, out + err
    new = home / ".conda/envs"
    assert config.read_text() == (
        "# config.fish\n"
        "if status is-interactive\n"
        "    set -gx ENVS $SCRATCH/conda-envs\n"
        "    conda activate $HOME/.conda/envs/abc\n"
        "    conda activate $HOME/.conda/envs/amd\n"
        "    conda activate $SCRATCH[1]/conda-envs/amd\n"
        "end\n"
        f"set -gx CONDA_PKGS_DIRS {home}/.conda/pkgs\n"
    )
    assert conf_d.read_text() == (
        f"fish_add_path {new}/abc/bin\n"
        'set -gx MYENV "$HOME"/.conda/envs/abc\n'
        "echo 'it\\'s' \"$HOME\"/.conda/envs/amd\n"
    )
    # fish sources only conf.d/*.fish.
    assert other.read_text() == f"{scratch.abc}\n"
    assert (
        f"warning: {config}: line 6 still names {scratch.amd} {UNREWRITTEN}: "
        "    conda activate $SCRATCH[1]/conda-envs/amd\n" in out
    ), out


def fish_escaped(text):
    """A value as fish writes it into ``fish_variables``: ``\\xHH`` for
    each character but letters, digits and ``/``."""
    return "".join(c if c.isalnum() or c == "/" else f"\\x{ord(c):02x}" for c in text)


def test_fish_universal_variables_are_named_with_the_command_to_run(
    scratch, home, migrate
):
    """``fish_add_path`` keeps its paths in the universal ``fish_user_paths``,
    which fish writes and reads itself: the run names each variable that
    still names an old prefix, with the ``set -U`` that moves it, and leaves
    the file to fish."""
    paths = "\\x1e".join(
        fish_escaped(p) for p in (f"{scratch.abc}/bin", "/usr/local/bin")
    )
    variables = write(
        home / ".config/fish/fish_variables",
        "# This file contains fish universal variable definitions.\n"
        "# VERSION: 3.0\n"
        "SETUVAR __fish_initialized:3400\n"
        f"SETUVAR --export MY_ENV:{fish_escaped(str(scratch.amd))}\n"
        f"SETUVAR fish_user_paths:{paths}\n"
        f"SETUVAR old_envs:{fish_escaped(str(scratch.amd))}d\n",
    )
    before = variables.read_bytes()

    out, err, code = migrate("-d", scratch.envs_dir, *RUN)

    assert code == 0, out + err
    assert variables.read_bytes() == before
    new = home / ".conda/envs"
    kept = "which fish keeps here and this run does not rewrite; in fish, run"
    warned = [line for line in out.splitlines() if line.startswith("warning: ")]
    head = f"warning: {variables}: line"
    my_env = (
        f"{head} 4 still names {scratch.amd} in fish's universal variable MY_ENV, "
        f"{kept}: set -Ux MY_ENV '{new}/amd'"
    )
    user_paths = (
        f"{head} 5 still names {scratch.abc} in fish's universal variable "
        f"fish_user_paths, {kept}: "
        f"set -U fish_user_paths '{new}/abc/bin' '/usr/local/bin'"
    )
    assert sorted(warned) == [my_env, user_paths]
