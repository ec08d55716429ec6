"""`charrnn sample` from the command line: output, streaming, pipes, the latest run, bad input."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.data.vocab import Vocab
from charrnn.infer.sample import SampleConfig, generate
from charrnn.models import lm as M
from tests.helpers import AUSTEN, cycle_model, invoke, one_line_error

VOCAB = Vocab("\n abcdeéж日")


def random_params(seed=0):
    cfg = M.ModelConfig(vocab_size=len(VOCAB), cell="lstm", hidden=8, layers=2)
    p = M.init_params(cfg, np.random.default_rng(seed))
    p["Wy"] *= 20.0
    return cfg, p


def save(path, cfg, p, meta=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    C.save(path, C.Checkpoint(cfg, VOCAB, p, meta or {}))
    return path


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A working directory with one run, runs/demo/best.npz (a random LSTM)."""
    monkeypatch.chdir(tmp_path)
    cfg, p = random_params()
    save(tmp_path / "runs" / "demo" / "best.npz", cfg, p, {"step": 42})
    return cfg, p


def sample(*args):
    return invoke("sample", *args)


def test_samples_the_latest_run_and_says_which_on_stderr(run):
    cfg, p = run
    r = sample("--prime", "ab日", "--length", "60", "--seed", "9", "--temperature", "0.7")
    assert r.exit_code == 0, r.output
    expected = "".join(generate(p, cfg, VOCAB, "ab日", SampleConfig(length=60, temperature=0.7),
                                np.random.default_rng(9)))
    assert r.stdout == expected  # only the text: no trailing newline on a pipe
    assert len(r.stdout) == 3 + 60
    assert os.path.join("runs", "demo", "best.npz") in r.stderr and "seed 9" in r.stderr


def test_the_most_recently_written_run_wins(run, tmp_path):
    p, cfg = cycle_model(VOCAB)
    old = save(tmp_path / "runs" / "old" / "last.npz", cfg, p)
    os.utime(old, (time.time() + 100, time.time() + 100))  # newer than demo
    r = sample("--prime", "a", "--greedy", "--length", "5")
    assert r.exit_code == 0 and r.stdout == "abcdeé"
    assert os.path.join("runs", "old", "last.npz") in r.stderr
    os.utime(old, (time.time() - 1000, time.time() - 1000))
    assert os.path.join("runs", "demo") in sample("--length", "3").stderr


def test_unicode_comes_out_intact(tmp_path):
    p, cfg = cycle_model(VOCAB)
    ck = save(tmp_path / "cycle.npz", cfg, p)
    r = sample("-c", str(ck), "--prime", "é", "--greedy", "--length", "4")
    assert r.exit_code == 0 and r.stdout_bytes == "éж日\n ".encode()


def test_same_seed_same_text_and_num_samples(run):
    a = sample("--seed", "3", "--length", "40", "--num-samples", "2")
    b = sample("--seed", "3", "--length", "40", "--num-samples", "2")
    c = sample("--seed", "4", "--length", "40", "--num-samples", "2")
    assert a.exit_code == 0 and a.stdout == b.stdout != c.stdout
    first, second = a.stdout[:40], a.stdout[42:]
    assert a.stdout[40:42] == "\n\n" and len(second) == 40 and first != second


def test_every_sample_starts_from_the_primed_state(run, monkeypatch):
    """The prime is fed twice for all of --num-samples (by the first sample, which shows it at
    once, then for the rest); each sample equals a generate() call that feeds it itself."""
    from charrnn.infer import sample as S

    cfg, p = run
    calls, real = [], S.warm
    monkeypatch.setattr(S, "warm", lambda *a: calls.append(1) or real(*a))
    r = sample("--seed", "5", "--length", "30", "--num-samples", "3", "--prime", "ab日c")
    assert len(calls) == 2
    monkeypatch.setattr(S, "warm", real)
    rng, config = np.random.default_rng(5), SampleConfig(length=30)
    want = "\n\n".join("".join(generate(p, cfg, VOCAB, "ab日c", config, rng)) for _ in range(3))
    assert r.exit_code == 0 and r.stdout == want


def test_a_prime_file_is_read_as_the_corpus_was(run, tmp_path):
    """Windows line endings and byte-order marks, which the corpus reader removes, would
    otherwise be characters the model never saw."""
    (tmp_path / "p.txt").write_bytes("\ufeffca\r\nb\ufeffa\r\n".encode())
    r = sample("--prime-file", "p.txt", "--length", "3", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ca\nba\n") and len(r.stdout) == 6 + 3


def test_prime_file_and_stop(run, tmp_path):
    (tmp_path / "prime.txt").write_text("ca\n", encoding="utf-8")
    r = sample("--prime-file", "prime.txt", "--length", "5", "--seed", "1")
    assert r.exit_code == 0 and r.stdout.startswith("ca\n") and len(r.stdout) == 8
    p, cfg = cycle_model(VOCAB)
    ck = save(tmp_path / "cycle.npz", cfg, p)
    r = sample("-c", str(ck), "--prime", "a", "--length", "50", "--stop", "d")
    assert r.exit_code == 0 and r.stdout == "abcd"


@pytest.mark.parametrize("args, message", [
    (["--prime", "aZbé€Z"], "prime text has characters not in the vocabulary: 'Z', '€'"),
    (["--checkpoint", "nowhere.npz"], "checkpoint not found: nowhere.npz"),
    (["--checkpoint", "runs"], "no checkpoint in runs"),
    (["--prime-file", "missing.txt"], "cannot read prime file missing.txt"),
    (["--prime-file", "empty.txt"], "prime file empty.txt is empty"),
    (["--checkpoint", "corrupt.npz"], "cannot read checkpoint corrupt.npz"),
])
def test_bad_input_gives_one_line_error(run, tmp_path, args, message):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip file at all")
    one_line_error(sample(*args), message, code=1, alone=True)


def test_unknown_prime_characters_error_naming_the_option_or_are_skipped_or_replaced(run):
    """--unknown: the classifier's treatment of characters never seen, for a
    language model's prime. Each result equals sampling from the prime a person would have
    typed instead: without those characters, or with a space (this vocabulary has no U+FFFD)."""
    cfg, p = run
    line = one_line_error(sample("--prime", "a猫b猫Z", "-n", 5), "'猫', 'Z'", "--unknown skip",
                          code=1)
    assert "--unknown replace" in line

    def expected(prime):
        return "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=20),
                                np.random.default_rng(3)))

    r = sample("--prime", "a猫b猫Z", "-n", 20, "--seed", 3, "--unknown", "skip")
    assert r.exit_code == 0 and r.stdout == expected("ab"), r.output
    assert "3 prime characters outside the model's vocabulary left out: '猫', 'Z'" in r.stderr
    r = sample("--prime", "a猫b猫Z", "-n", 20, "--seed", 3, "--unknown", "replace")
    assert r.exit_code == 0 and r.stdout == expected("a b  "), r.output
    assert "replaced by ' '" in r.stderr
    r = sample("--prime", "猫", "-n", 20, "--seed", 3, "--unknown", "skip")  # nothing left
    assert r.exit_code == 0 and r.stdout == expected(""), r.output
    r = CliRunner().invoke(cli, ["sample", "-i", "-n", "19", "--seed", "3", "--unknown", "skip"],
                           input="a猫\n")
    assert r.exit_code == 0 and r.stdout == expected("a")[1:20] + "\n", r.output
    assert "left out: '猫'" in r.stderr


def test_the_replacement_is_the_unknown_symbol_when_the_vocabulary_has_it():
    from charrnn.infer.sample import prepare_prime, replacement

    assert replacement(Vocab("ab\ufffd ")) == "\ufffd"
    assert replacement(Vocab("ab\n")) == "\n" and replacement(Vocab("xy")) == "x"
    assert prepare_prime(Vocab("ab\ufffd"), "a猫b", "replace") == ("a\ufffdb", ["猫"])
    assert prepare_prime(Vocab("ab"), "ab", "error") == ("ab", [])


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0"], "Invalid value for '--temperature' / '-t'"),
    (["--temperature", "-2"], "Invalid value for '--temperature' / '-t'"),
    (["--temperature", "nan"], "nan is not a finite number"),
    (["--length", "-5"], "Invalid value for '--length': -5 is not in the range x>=0"),
    (["-n", "-5"], "Invalid value for '-n': -5 is not in the range x>=0"),
    (["--top-p", "0"], "Invalid value for '--top-p'"),
    (["--top-p", "1.5"], "Invalid value for '--top-p'"),
    (["--top-k", "0"], "Invalid value for '--top-k'"),
    (["--num-samples", "0"], "Invalid value for '--num-samples' / '-m'"),
    (["--seed", "-1"], "Invalid value for '--seed'"),
    (["--greedy", "--top-k", "3", "-t", "2"], "cannot be combined with --temperature, --top-k"),
    (["--prime", "a", "--prime-file", "empty.txt"], "give --prime or --prime-file, not both"),
    (["-i", "--prime", "a"], "--interactive reads each prime from stdin"),
])
def test_usage_errors_exit_2_and_name_the_option(run, tmp_path, args, message):
    """A bad option value is Click's usage error, not the library's wording."""
    (tmp_path / "empty.txt").write_bytes(b"")
    r = sample(*args)
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], r.stderr


def test_no_runs_at_all_tells_the_user_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = sample("--prime", "a")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        ("Error: no trained model found under runs/: run `charrnn train` first, or give "
         "-c/--checkpoint")]


def _popen(tmp_path, *args):
    env = dict(os.environ, PYTHONUNBUFFERED="0")
    return subprocess.Popen([sys.executable, "-m", "charrnn", "sample", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_text_is_written_while_generation_goes_on(run, tmp_path):
    proc = _popen(tmp_path, "--prime", "ab", "--length", "10000000", "--seed", "0")
    try:
        first = proc.stdout.read(5)  # returns once 5 bytes are written and flushed
        assert first[:2] == b"ab" and len(first) == 5
        assert proc.poll() is None  # ten million characters are far from done
    finally:
        proc.kill()
        proc.communicate()


def _interrupt_sampling(tmp_path, n, act):
    """Start a long `charrnn sample`, read n characters (generation is under way), act on the
    process, and return its exit code and stderr."""
    proc = _popen(tmp_path, "--length", "10000000", "--seed", "0")
    try:
        assert len(proc.stdout.read(n)) == n
        act(proc)
        code = proc.wait(timeout=60)
        return code, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_pipe_closed_early_ends_quietly(run, tmp_path):
    """`charrnn sample | head -c 100`: the reader goes away; exit 0 and nothing on stderr."""
    code, stderr = _interrupt_sampling(tmp_path, 100, lambda proc: proc.stdout.close())
    assert code == 0, stderr
    assert stderr.strip().splitlines()[-1].startswith("sampling from"), stderr  # nothing else


def test_ctrl_c_while_sampling_exits_130_quietly(run, tmp_path):
    import signal
    code, stderr = _interrupt_sampling(tmp_path, 20, lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"


def test_ctrl_c_with_stdout_full_still_exits_130(run, tmp_path):
    """The reader stopped reading (a paused pager): the pipe is full and sample waits in a
    write. Ctrl-C must still end it; the exit-time flush of the text that did not fit waited
    forever (seen once single-stream sampling got fast enough to fill the pipe)."""
    import signal

    def full_then_interrupt(proc):
        time.sleep(3)  # a 64 KB pipe fills in well under a second at this model's speed
        proc.send_signal(signal.SIGINT)

    code, stderr = _interrupt_sampling(tmp_path, 20, full_then_interrupt)
    assert code == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr


# --- edge cases: bad numbers, conflicting options, odd primes ---------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--length", "-5"], "length"), (["--temperature", "nan"], "temperature"),
    (["--temperature", "1e-310"], "Invalid value for '--temperature'"),
    (["--temperature", "inf"], "temperature"), (["--top-k", "-2"], "top-k"),
    (["--top-p", "nan"], "top-p"), (["--num-samples", "-1"], "--num-samples"),
    (["--length", "x"], "--length"),
])
def test_sample_rejects_bad_numbers(trained, args, needle):
    one_line_error(invoke("sample", "-c", trained / "run", *args), needle)


def test_greedy_conflicts_with_the_sampling_knobs(trained):
    for knob in (["--temperature", "0.5"], ["--top-k", "3"], ["--top-p", "0.9"]):
        one_line_error(invoke("sample", "-c", trained / "run", "--greedy", *knob), "--greedy",
                       knob[0])
    assert invoke("sample", "-c", trained / "run", "--greedy", "--length", 5).exit_code == 0


def test_prime_unknown_characters_listed(trained):
    one_line_error(invoke("sample", "-c", trained / "run", "--prime", "It is Ω and ☃, Ω"),
                   "not in the vocabulary: 'Ω', '☃'")


def test_empty_prime_starts_after_a_newline(trained):
    r = invoke("sample", "-c", trained / "run", "--prime", "", "--length", 40, "--seed", 3)
    assert r.exit_code == 0 and len(r.stdout) == 40
    ck = C.load(trained / "run" / "best.npz")
    expected = "".join(generate(ck.params, ck.model, ck.vocab, "\n", SampleConfig(length=40),
                                np.random.default_rng(3)))
    assert r.stdout == expected[1:]  # the same as priming with "\n", minus its echo


def test_prime_longer_than_the_corpus(trained, tmp_path):
    prime = AUSTEN * 3  # 2688 characters; the model saw 896
    (tmp_path / "prime.txt").write_text(prime)
    r = invoke("sample", "-c", trained / "run", "--prime-file", tmp_path / "prime.txt",
               "--length", 30, "--seed", 5)
    assert r.exit_code == 0 and r.stdout.startswith(prime) and len(r.stdout) == len(prime) + 30


# --- output other programs can read, several stops, an interactive prompt ----------------------

def test_separator_replaces_the_blank_line_between_samples(run):
    a = sample("--seed", "3", "--length", "40", "--num-samples", "3")
    b = sample("--seed", "3", "--length", "40", "--num-samples", "3", "--separator", "\n--\n")
    assert a.exit_code == 0 and b.exit_code == 0
    assert b.stdout.split("\n--\n") == a.stdout.split("\n\n") and len(b.stdout.split("\n--\n")) == 3


def test_json_gives_one_object_per_sample_with_prime_text_and_seed(run):
    import json

    cfg, p = run
    r = sample("--seed", "5", "--length", "30", "-m", "3", "--prime", "ab", "--json")
    assert r.exit_code == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    rng, config = np.random.default_rng(5), SampleConfig(length=30)
    want = ["".join(generate(p, cfg, VOCAB, "ab", config, rng))[2:] for _ in range(3)]
    assert [o["text"] for o in objs] == want and r.stdout.endswith("\n")
    assert [o["index"] for o in objs] == [0, 1, 2]
    assert all(o["prime"] == "ab" and o["seed"] == 5 and o["chars"] == 30 and o["stop"] is None
               and o["checkpoint"].endswith("best.npz") for o in objs)


def test_stop_is_repeatable_and_the_first_reached_ends_the_sample(tmp_path):
    import json

    p, cfg = cycle_model(VOCAB)  # a -> b -> c -> d -> e -> é ...
    ck = str(save(tmp_path / "cycle.npz", cfg, p))
    r = CliRunner().invoke(cli, ["sample", "-c", ck, "--prime", "a", "-n", "50", "--stop", "é",
                                 "--stop", "cd"])
    assert r.exit_code == 0 and r.stdout == "abcd"  # "cd" comes before "é"; both are honoured
    r = CliRunner().invoke(cli, ["sample", "-c", ck, "--prime", "a", "-n", "50", "--stop", "zz",
                                 "--stop", "e", "--json"])
    assert json.loads(r.stdout) | {"checkpoint": None} == {
        "index": 0, "prime": "a", "text": "bcde", "seed": json.loads(r.stdout)["seed"],
        "checkpoint": None, "chars": 4, "stop": "e"}


def test_prime_option_gets_the_line_endings_of_a_prime_file(tmp_path):
    p, cfg = cycle_model(VOCAB)
    ck = str(save(tmp_path / "cycle.npz", cfg, p))
    r = CliRunner().invoke(cli, ["sample", "-c", ck, "--prime", "a\r\n", "--greedy", "-n", "2"])
    assert r.exit_code == 0, r.stderr  # '\r' is not in the vocabulary: it would be an error
    assert r.stdout == "a\n a"


def test_interactive_reads_primes_from_stdin_until_eof(tmp_path):
    p, cfg = cycle_model(VOCAB)
    ck = str(save(tmp_path / "cycle.npz", cfg, p))
    r = CliRunner().invoke(cli, ["sample", "-c", ck, "-i", "--greedy", "-n", "3"],
                           input="a\ncZ\nc\n")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "bcd\ndeé\n"  # a -> bcd; c -> deé
    assert r.stderr.count("> ") == 4  # asked for each line and once more before the end
    assert "'Z'" in r.stderr  # an unknown character is reported and the prompt goes on
