"""`charrnn sample`: generate text from a language model, or texts for a label from a
conditioned generator (--task generate), streamed to stdout."""

from __future__ import annotations

import json
import sys

import click

from ..errors import CharrnnError
from ..infer.sample import MIN_TEMPERATURE as S_MIN_TEMPERATURE
from .console import CONTEXT, PATH, FiniteFloat, err, is_generator, kernels_option, open_lm


def _read_prime(path: str) -> str:
    from pathlib import Path

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise click.ClickException(f"cannot read prime file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.ClickException(f"prime file {path} is not valid UTF-8 at byte offset "
                                   f"{e.start}") from None
    from ..data.text import normalise

    text = normalise(text)  # as the corpus was read: no byte-order marks, \n line endings
    if not text:
        raise click.ClickException(f"prime file {path} is empty")
    return text


@click.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written language-model run under runs/.")
@click.option("--prime", "-p", default="", metavar="TEXT",
              help="Text to start from: fed through the model to warm its state, printed first.")
@click.option("--prime-file", type=PATH, metavar="PATH",
              help="Read the prime from this UTF-8 file.")
@click.option("--length", type=click.IntRange(0), default=None,
              help="Characters to generate after the prime (per sample); a generator's text ends "
              "sooner at its end marker.  [default: 500; a generator: 50]")
@click.option("-n", "n", type=click.IntRange(0), default=None, metavar="N",
              help="A language model: characters to generate, as --length. A generator (--task "
              "generate): how many texts, one a line, as --num-samples.")
@click.option("--label", "-l", default=None, metavar="LABEL",
              help="A generator (--task generate): the label to generate for (e.g. a language); "
              "a missing or unknown label is an error listing the run's labels.")
@click.option("--temperature", "-t", type=FiniteFloat(S_MIN_TEMPERATURE), default=None,
              help="Divide the logits by this before the softmax: below 1 is safer, above 1 "
              "wilder. At least 1e-100 (--greedy is the limit of 0).  [default: 1.0]")
@click.option("--greedy", is_flag=True,
              help="Always take the most likely character (no temperature, top-k or top-p).")
@click.option("--top-k", type=click.IntRange(1), default=None, metavar="K",
              help="Draw only from the K most likely characters.")
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=None, metavar="P",
              help="Draw only from the smallest set of most likely characters whose probability "
              "reaches P, in (0, 1]; 1 draws from all.  [default: 1; a generator (--task "
              "generate): 0.9]")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Random seed; the same seed gives the same text. Default: a fresh one, shown "
              "on stderr.")
@click.option("--num-samples", "-m", type=click.IntRange(1), default=1, show_default=True,
              help="Independent samples to draw, separated by --separator.")
@click.option("--separator", default="\n\n", show_default="a blank line", metavar="TEXT",
              help="Written between a language model's samples (a generator's texts are one a "
              "line; after a sample that ends with newlines a blank line "
              "is ambiguous: give e.g. $'\\n---\\n').")
@click.option("--stop", multiple=True, metavar="TEXT",
              help="End a sample as soon as it ends with this text (e.g. a blank line); repeat "
              "to stop at the first of several.")
@click.option("--json", "as_json", is_flag=True,
              help="Write one JSON object per sample, one per line (JSON Lines), each when its "
              "sample is done: index (0, 1, ... within this command), prime, text (generated "
              "after the prime), seed (this command's; with the same -m and settings it repeats "
              "every sample), checkpoint, chars (characters generated) and stop (the --stop text "
              "that ended it, or null).")
@click.option("--unknown", type=click.Choice(("error", "skip", "replace")), default="error",
              show_default=True,
              help="What to do with prime characters the model never saw (a Chinese character "
              "not in its training text, say): stop with an error naming them; skip them; or "
              "replace each with the unknown symbol U+FFFD if the vocabulary has it, else a "
              "space, else a newline. The prime is echoed as fed; stderr counts what was "
              "changed.")
@click.option("--interactive", "-i", is_flag=True,
              help="Read primes from stdin, one per line (prompt on stderr), and stream each "
              "continuation to stdout, until end of input (Ctrl-D).")
@kernels_option
def sample(checkpoint, prime, prime_file, length, n, label, temperature, greedy, top_k, top_p,
           seed, num_samples, separator, stop, as_json, unknown, interactive, kernels):
    """Generate text from a trained model, streaming it to stdout as it is made.

    The prime is printed first, then each character as it is drawn. Only generated text goes to
    stdout (the checkpoint used and the seed go to stderr), so the output can be piped or
    redirected; `charrnn sample | head -c 100` stops quietly. Without a prime the model starts
    after a newline. The logits are divided by --temperature, then --top-k and --top-p (if
    given) trim the distribution before each draw.

    \b
    Examples:
      charrnn sample --prime "ROMEO:" --length 300 --temperature 0.8
      charrnn sample -c runs/tinyshakespeare --top-p 0.9 --seed 7 --num-samples 3
      charrnn sample --greedy --stop $'\\n\\n' --stop "."
      charrnn sample -m 5 --json | jq -r .text
      charrnn sample -i -n 200                 type a prime, read the continuation
      charrnn sample -c runs/gen --label Russian -n 10       ten names (a --task generate run)
      charrnn sample -c runs/gen --label Russian -n 5 --prime Ro --temperature 0.8

    For a generator (--task generate) each text starts from the label's condition (and
    --prime, its first letters, printed as part of it) and ends at the end marker the model
    draws, or after --length characters: one text a line. Unless told otherwise a generator
    draws from the top-p 0.9 nucleus (--top-p 1 draws from every character).
    """
    import numpy as np

    from ..data.text import normalise
    from ..infer import sample as S

    if prime and prime_file is not None:
        raise click.UsageError("give --prime or --prime-file, not both")
    if interactive and (prime or prime_file is not None):
        raise click.UsageError("--interactive reads each prime from stdin; it takes no --prime "
                               "or --prime-file")
    if prime_file is not None:
        prime = _read_prime(prime_file)
    prime = normalise(prime)  # as a prime file and the corpus are read: \n line endings
    knobs = [n for n, v in (("--temperature", temperature), ("--top-k", top_k),
                            ("--top-p", top_p)) if v is not None]
    if greedy and knobs:
        raise click.UsageError(f"--greedy always takes the most likely character; it "
                               f"cannot be combined with {', '.join(knobs)}")
    file, ckpt = open_lm(checkpoint, "sample", generators=True, kernels=kernels)
    generator = is_generator(ckpt)
    if n is not None and (length if not generator else num_samples_given()) is not None:
        raise click.UsageError("-n is --length for a language model and --num-samples for a "
                               "generator; give one of them")
    if n is not None:
        length, num_samples = (length, n) if generator else (n, num_samples)
    if length is None:
        from ..infer.generated import MAX_LENGTH

        length = MAX_LENGTH if generator else 500
    if generator and top_p is None and not greedy:
        from ..infer.generated import TOP_P

        top_p = TOP_P  # a generator draws from the nucleus unless told (infer.generated says why)
    config = S.SampleConfig(length=length, temperature=1.0 if temperature is None else temperature,
                            greedy=greedy, top_k=top_k, top_p=top_p, stop=tuple(stop) or None)
    if generator:
        if interactive:
            raise click.UsageError("--interactive is for language models; give a generator "
                                   "--label and --prime instead")
        return _conditioned(file, ckpt, label, prime, config, seed, num_samples, as_json)
    if label is not None:
        raise click.UsageError("--label is for a generator (--task generate); "
                               f"{file} holds a language model")
    if not interactive:
        prime = _prime_for(ckpt.vocab, prime, unknown)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    step = ckpt.meta.get("step")
    err.print(f"sampling from {file}" + (f" (step {step})" if step is not None else "")
              + ("" if greedy else f", seed {seed}"), markup=False)
    rng = np.random.default_rng(seed)
    write = _stdout_writer()
    index = 0

    def draw(prime, echo_prime):
        """Write num_samples samples after `prime`; the text written last."""
        nonlocal index
        last, warmed = "", None
        for k in range(num_samples):
            if k and not as_json:
                write(separator)
            if k:  # the first sample showed the prime at once; the others start from its state
                warmed = warmed or S.warm(ckpt.params, ckpt.model,
                                          S.start_ids(ckpt.vocab, prime))
            pieces = S.generate(ckpt.params, ckpt.model, ckpt.vocab, prime, config, rng, warmed)
            if prime and (as_json or not echo_prime):
                next(pieces)  # the prime itself: a field of its own, or already on the screen
            if as_json:
                text = "".join(pieces)
                ended = next((t for t in config.stops if (prime + text).endswith(t)), None)
                write(json.dumps({"index": index, "prime": prime, "text": text, "seed": seed,
                                  "checkpoint": str(file), "chars": len(text), "stop": ended},
                                 ensure_ascii=False) + "\n")
                last = "\n"
            else:
                for piece in pieces:
                    write(piece)
                    last = piece
            index += 1
        return last

    if not interactive:
        last = draw(prime, echo_prime=True)
        if sys.stdout.isatty() and not last.endswith("\n"):
            write("\n")  # so the shell prompt starts on its own line
        return
    stdin = sys.stdin
    while True:
        click.echo("> ", nl=False, err=True)
        line = stdin.readline()
        if not line:  # end of input (Ctrl-D)
            click.echo(err=True)
            return
        typed = normalise(line.rstrip("\r\n"))
        try:
            typed = _prime_for(ckpt.vocab, typed, unknown)
        except CharrnnError as e:
            click.echo(f"Error: {e}", err=True)  # a typo ends nothing: ask again
            continue
        last = draw(typed, echo_prime=False)
        if not last.endswith("\n"):
            write("\n")


def num_samples_given():
    """--num-samples/-m as given on the command line, or None."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = ctx.get_parameter_source("num_samples") == ParameterSource.COMMANDLINE
    return ctx.params["num_samples"] if given else None


def _conditioned(file, ckpt, label, prime, config, seed, count, as_json):
    """`charrnn sample` of a generator: `count` texts for `label`, one a line."""
    import numpy as np

    from ..infer import sample as S
    from ..infer.generated import labels_of

    cond = S.label_condition(labels_of(ckpt), label, ckpt.model.dtype)
    S.check_prime(ckpt.vocab, prime)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    err.print(f"sampling {label} from {file}" + ("" if config.greedy else f", seed {seed}"),
              markup=False)
    rng = np.random.default_rng(seed)
    write = _stdout_writer()
    for index in range(count):
        pieces = S.generate_conditioned(ckpt.params, ckpt.model, ckpt.vocab, cond, prime, config,
                                        rng)
        if as_json:
            text = "".join(pieces)[len(prime):]
            write(json.dumps({"index": index, "label": label, "prime": prime, "text": text,
                              "seed": seed, "checkpoint": str(file), "chars": len(text)},
                             ensure_ascii=False) + "\n")
            continue
        for piece in pieces:
            write(piece)
        write("\n")


def _prime_for(vocab, prime: str, unknown: str) -> str:
    """The prime to feed under --unknown, with a note on stderr of what was skipped or
    replaced (VocabularyError with --unknown error)."""
    from ..data.vocab import describe_chars
    from ..infer import sample as S

    fed, missing = S.prepare_prime(vocab, prime, unknown)
    if missing:
        n = sum(c in set(missing) for c in prime)
        what = "left out" if unknown == "skip" else f"replaced by {S.replacement(vocab)!r}"
        err.print(f"note: {n} prime character{'s' if n != 1 else ''} outside the model's "
                  f"vocabulary {what}: {describe_chars(missing)}", markup=False)
    return fed


def _stdout_writer():
    """write(text): to stdout as UTF-8 whatever the locale, flushed at once."""
    stream = getattr(sys.stdout, "buffer", None)

    def write(text):
        if stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            stream.write(text.encode("utf-8"))
            stream.flush()

    return write
