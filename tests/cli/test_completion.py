"""Shell completion completes file names wherever a command takes a path."""

import click
import pytest
from click.testing import CliRunner

from charrnn.cli import cli

# Parameter names that always hold a file or directory path, in any command; a new command's path
# options are checked by name, so none is missed because nobody listed it here.
PATH_NAMES = {"checkpoint", "checkpoints", "corpus", "file", "out", "positional", "prime_file",
              "json_path", "source", "run_dir", "val", "output"}


def _path_params():
    for name, command in sorted(cli.commands.items()):
        for p in command.params:
            if p.name in PATH_NAMES or p.name.endswith(("_file", "_path", "_dir")):
                yield pytest.param(name, p, id=f"{name}-{p.name}")


@pytest.mark.parametrize("command, param", list(_path_params()))
def test_every_path_is_a_click_path(command, param):
    assert isinstance(param.type, click.Path), (command, param.name)


def test_the_path_check_covers_every_command_that_reads_a_run():
    covered = {command for command, *_ in (p.values for p in _path_params())}
    assert {"train", "sample", "eval", "info", "gradflow", "predict", "export",
            "import"} <= covered


@pytest.mark.parametrize("words", ["charrnn info -c ", "charrnn eval ", "charrnn train ",
                                   "charrnn gradflow -c ", "charrnn predict -c ",
                                   "charrnn export -c "])
def test_bash_completion_offers_file_names(words):
    env = {"_CHARRNN_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()))}
    r = CliRunner().invoke(cli, [], env=env, prog_name="charrnn")
    assert r.exit_code == 0 and r.stdout.startswith("file,"), r.stdout


def test_the_completion_script_is_there_for_bash_zsh_and_fish():
    for shell in ("bash", "zsh", "fish"):
        r = CliRunner().invoke(cli, [], env={"_CHARRNN_COMPLETE": f"{shell}_source"},
                               prog_name="charrnn")
        assert r.exit_code == 0 and "_CHARRNN_COMPLETE" in r.stdout, shell
