"""Issue 15 H: shell completion completes file names wherever a command takes a path."""

import click
import pytest
from click.testing import CliRunner

from charrnn.cli import cli

PATHS = {"train": {"corpus", "out"}, "sample": {"checkpoint", "prime_file"},
         "eval": {"file", "checkpoint"}, "info": {"positional", "checkpoint"},
         "gradflow": {"checkpoints", "corpus", "json_path"}}


@pytest.mark.parametrize("command", PATHS)
def test_every_path_is_a_click_path(command):
    params = {p.name: p for p in cli.commands[command].params}
    for name in PATHS[command]:
        assert isinstance(params[name].type, click.Path), (command, name)


@pytest.mark.parametrize("words", ["charrnn info -c ", "charrnn eval ", "charrnn train ",
                                   "charrnn gradflow -c "])
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
