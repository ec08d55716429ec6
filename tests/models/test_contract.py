"""Every family in FAMILIES against the contract charrnn.models documents: the names with their
signatures, and what the trainer, the workers, checkpoints and gradcheck rely on, each checked
against an independent computation (sizes summed here, a central difference, row slices summed).
A new family passes only by keeping the contract."""

import inspect
import itertools
import math

import numpy as np
import pytest

from charrnn import models
from charrnn.data.labelled import UNKNOWN
from charrnn.data.pairs import RESERVED
from charrnn.data.vocab import Vocab
from charrnn.models import FAMILIES
from charrnn.nn.state import flat_state, state_slice
from tests.helpers import assert_close

# the leading parameters each callable name takes, in order (extra ones must have defaults)
SIGNATURES = {
    "param_shapes": ["cfg"], "init_params": ["cfg", "rng"], "count_params": ["cfg"],
    "init_state": ["cfg", "rows"], "state_names": ["cfg"], "width": ["cfg"],
    "draw_masks": ["cfg", "rng", "batch"], "slice_masks": ["masks", "rows"],
    "gradients": ["params", "cfg", "batch", "state", "masks", "dfinal", "scale"],
    "loss_and_grads": ["params", "cfg", "batch", "state", "rng", "masks", "scale"],
    "loss": ["params", "cfg", "batch", "state", "masks"],
    "example_batch": ["cfg", "rng", "rows", "steps"],
    "check_configs": ["cell", "layers", "hidden", "vocab", "classes"],
    "load_data": ["tcfg", "saved"], "complete": ["cfg", "data"], "data_meta": ["data"],
    "evaluate": ["params", "cfg", "data", "tcfg", "workers"], "train_figures": ["mean_loss"],
    "batch_chars": ["batch"], "memory_needed": ["cfg", "batch", "seq", "processes"],
    "describe": ["cfg"], "describe_metric": ["value"],
    "inside": ["params", "cfg", "vocab", "text", "keep", "meta"],
    "score_rows": ["params", "cfg"],  # then the family's own arrays (its rows)
}
DERIVED = ("DEFAULT", "TRAIN_DEFAULTS", "count_params", "init_state", "state_names",
           "slice_masks", "loss_and_grads", "loss", "train_figures", "data_meta")

# what each family's `inside` reads (vocabulary, text, checkpoint meta): a new family adds its own
INSIDE = {
    "lm": (["a", "b", "c", "d"], "abcab", {}),
    "classify": ([UNKNOWN, "a", "b", "c"], "abc\nca", {}),
    "tag": ([UNKNOWN, "a", "b", "c"], "abc\nca", {}),
    "seq2seq": ([UNKNOWN, "a", "b", "c"], "abc\nca", {}),
    "generate": ([*RESERVED, "a", "b", "c", "d"], "abc\tx\nda\ty", {"labels": ["x", "y", "z"]}),
}

ROWS, STEPS = 5, 6


def configs(F):
    """The family's small float64 models, with dropout (2 layers) and without (1)."""
    return [cfg for layers in (1, 2) for cell in ("lstm", "gru")
            for _, cfg in F.check_configs(cell, layers, 5, 4, 3)]


def setup(F, cfg, seed=0):
    rng = np.random.default_rng(seed)
    params = F.init_params(cfg, rng)
    for name in params:  # off the special initial values
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    batch = F.example_batch(cfg, rng, ROWS, STEPS)
    state = tuple(tuple(0.5 * rng.standard_normal(a.shape) for a in layer)
                  for layer in F.init_state(cfg, ROWS))
    masks = F.draw_masks(cfg, np.random.default_rng(seed + 1), batch)
    return params, batch, state, masks


def test_the_registry_holds_the_five_families_by_their_names():
    assert list(FAMILIES) == ["lm", "classify", "tag", "seq2seq", "generate"]
    assert all(F.NAME == name for name, F in FAMILIES.items())


@pytest.mark.parametrize("name", FAMILIES)
def test_every_name_is_there_with_its_signature(name):
    F = FAMILIES[name]
    for attr in (*models.ESSENTIAL, *DERIVED):
        assert hasattr(F, attr), f"{name} lacks {attr}"
    for attr, want in SIGNATURES.items():
        params = list(inspect.signature(getattr(F, attr)).parameters.values())
        got = [p.name for p in params[: len(want)]]
        assert got == want, f"{name}.{attr}{tuple(got)}: the contract says {tuple(want)}"
        extra = [p.name for p in params[len(want):]
                 if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert not extra or attr == "score_rows", f"{name}.{attr} needs {extra} beyond the contract"
    assert F.DEFAULT == F.Config() and isinstance(F.TRAIN_DEFAULTS, dict)
    assert F.METRIC.startswith("val_") and isinstance(F.describe_metric(0.5), str)


def test_a_family_missing_an_essential_name_is_refused_at_registration():
    import types

    F = types.ModuleType("half")
    F.NAME = "half"
    with pytest.raises(TypeError, match="half lacks Config, METRIC"):
        models._derive(F)


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_parameters_sizes_and_state_agree(name):
    F = FAMILIES[name]
    for cfg in configs(F):
        assert F.Config.from_dict(cfg.to_dict()) == cfg
        shapes = F.param_shapes(cfg)
        params = F.init_params(cfg, np.random.default_rng(0))
        assert list(params) == list(shapes), "init_params in param_shapes' order"
        for k, a in params.items():
            assert a.shape == tuple(shapes[k]) and a.dtype == np.dtype(cfg.dtype), k
        assert F.count_params(cfg) == sum(a.size for a in params.values())
        state = flat_state(F.init_state(cfg, 3))
        assert len(state) == len(F.state_names(cfg))
        assert all(a.shape[0] == 3 and not a.any() for a in state)
        assert isinstance(F.width(cfg), int) and F.width(cfg) > 0
        assert isinstance(F.describe(cfg), str) and F.describe(cfg)
        assert F.memory_needed(cfg, 8, 16, 2) > F.memory_needed(cfg, 8, 16, 1) > 0
        assert F.batch_chars(F.example_batch(cfg, np.random.default_rng(1), 3, 4)) > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_and_grads_loss_and_gradients_agree(name):
    F = FAMILIES[name]
    for cfg in configs(F):
        params, batch, state, masks = setup(F, cfg)
        loss, grads, final, dstate0 = F.gradients(params, cfg, batch, state, masks, None)
        l2, g2, f2 = F.loss_and_grads(params, cfg, batch, state, masks=masks)
        l3, f3 = F.loss(params, cfg, batch, state, masks)
        assert l2 == loss and l3 == pytest.approx(loss, rel=1e-12)
        assert list(grads) == list(params) and list(g2) == list(params)
        for k in params:
            np.testing.assert_array_equal(g2[k], grads[k], err_msg=k)
        for a, b, c in zip(flat_state(final), flat_state(f2), flat_state(f3)):
            np.testing.assert_array_equal(a, b)
            assert_close(c, a, what="loss's final state")
        assert len(flat_state(dstate0)) == len(F.state_names(cfg))
        # the masks drawn from an rng equal to the one draw_masks is given
        l4, _, _ = F.loss_and_grads(params, cfg, batch, state, rng=np.random.default_rng(1))
        assert l4 == loss
        # scale multiplies the loss and the gradients
        l5, g5, _ = F.loss_and_grads(params, cfg, batch, state, masks=masks, scale=0.25)
        assert l5 == pytest.approx(0.25 * loss, rel=1e-12)
        assert_close(g5["by" if "by" in g5 else "bo"], 0.25 * grads["by" if "by" in g5 else "bo"])


@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_are_the_central_difference_of_loss(name):
    """One element of every parameter, float64, masks fixed (gradcheck checks every element)."""
    F = FAMILIES[name]
    cfg = configs(F)[-1]  # 2 layers: dropout on
    params, batch, state, masks = setup(F, cfg, seed=4)
    _, grads, _, _ = F.gradients(params, cfg, batch, state, masks, None)
    rng = np.random.default_rng(5)
    for k, a in params.items():
        i = tuple(int(rng.integers(n)) for n in a.shape)
        old, eps, f = a[i], 1e-5, []
        for d in (eps, -eps):
            a[i] = old + d
            f.append(F.loss(params, cfg, batch, state, masks)[0])
        a[i] = old
        numeric = (f[0] - f[1]) / (2 * eps)
        assert abs(grads[k][i] - numeric) <= 1e-6 * max(1.0, abs(numeric)), (k, i)


@pytest.mark.parametrize("name", FAMILIES)
def test_row_slices_with_sliced_masks_add_up_to_the_batch(name):
    """What charrnn.parallel relies on: draw_masks for all rows, slice_masks per slice, each
    slice's loss and gradients scaled by its share of the rows sum to the whole batch's."""
    F = FAMILIES[name]
    cfg = configs(F)[-1]
    params, batch, state, _ = setup(F, cfg)
    masks = F.draw_masks(cfg, np.random.default_rng(3), batch)
    assert masks is not None, "2 layers have dropout"
    loss, grads, final = F.loss_and_grads(params, cfg, batch, state, masks=masks)
    total, summed, finals = 0.0, {k: np.zeros_like(v) for k, v in params.items()}, []
    for s in (slice(0, 2), slice(2, ROWS)):
        part = tuple(np.asarray(a)[s] for a in batch)
        l, g, f = F.loss_and_grads(params, cfg, part, state_slice(state, s),
                                   masks=F.slice_masks(masks, s), scale=(s.stop - s.start) / ROWS)
        total += l
        finals.append(f)
        for k in g:
            summed[k] += g[k]
    assert total == pytest.approx(loss, rel=1e-12)
    for k in params:
        assert_close(summed[k], grads[k], rtol=1e-10, atol=1e-13, what=k)
    for j, a in enumerate(flat_state(final)):
        assert_close(np.concatenate([flat_state(f)[j] for f in finals]), a, what="final state")


@pytest.mark.parametrize("name", FAMILIES)
def test_inside_records_every_layer_at_every_character_read(name):
    F = FAMILIES[name]
    chars, text, meta = INSIDE[name]
    for cfg in configs(F):
        params = F.init_params(cfg, np.random.default_rng(0))
        read, spans, arrays, skipped = F.inside(params, cfg, Vocab(chars), text, meta=meta)
        assert read and skipped == 0 and spans[0][0] == 0 and spans[-1][1] == len(read)
        assert all(a <= b for (_, a), (b, _) in itertools.pairwise(spans))
        assert arrays and all(a.shape == (len(read), cfg.hidden) for a in arrays.values())
        assert {k.split(".")[0] for k in arrays} == {f"l{k}" for k in range(cfg.layers)}
        keep = [next(iter(arrays))]
        assert list(F.inside(params, cfg, Vocab(chars), text, keep, meta)[2]) == keep


@pytest.mark.parametrize("name", FAMILIES)
def test_score_rows_splits_by_rows(name):
    """score_rows on a slice of rows is that slice of score_rows on all of them (workers)."""
    F = FAMILIES[name]
    cfg = configs(F)[0]
    params, batch, _, _ = setup(F, cfg)
    arrays, opts = ROW_ARRAYS[name](cfg, batch)
    whole = F.score_rows(params, cfg, *arrays, **opts)
    part = F.score_rows(params, cfg, *[a[1:3] for a in arrays], **opts)
    for w, p in zip(whole, part):
        assert_close(p, np.asarray(w)[1:3], what=f"{name}.score_rows")


# what each family's score_rows reads, made from an example batch
ROW_ARRAYS = {
    "lm": lambda cfg, b: ([b[0], b[1]], {"seq": 4}),
    "classify": lambda cfg, b: ([b[0], b[1]], {}),
    "tag": lambda cfg, b: ([b[0], b[1]], {}),
    "seq2seq": lambda cfg, b: ([*b[:4], (b[4] != 0).astype(float)], {}),
    "generate": lambda cfg, b: ([b[0], b[1], (b[2] != 0).astype(float), b[3]], {}),
}


def test_a_family_may_write_a_derived_name_itself():
    """lm writes its own init_state (it carries a state); the registry leaves it alone."""
    from charrnn.models import lm

    assert FAMILIES["lm"].init_state is lm.init_state
    assert lm.init_state.__module__ == "charrnn.models.lm"
    assert FAMILIES["tag"].init_state.__module__ == "charrnn.models"
    assert math.isclose(FAMILIES["lm"].train_figures(math.log(2))["train_bpc"], 1.0)


# --- inference: the optional hooks the commands ask for instead of a family's name --------------

@pytest.mark.parametrize("name", FAMILIES)
def test_the_inference_hooks_run_on_a_small_model(name):
    """A family has a way to be used (a plain language model, a generator, or ANSWERS for
    `predict`), each hook runs, and says what becomes of unknown characters."""
    from charrnn.models import lm

    F = FAMILIES[name]
    ways = [h for h in ("stepper", "conditioned_lm", "ANSWERS") if hasattr(F, h)]
    assert len(ways) == 1, f"{name}: {ways or 'no way to use a trained model'}"
    assert F.OUT_OF_VOCABULARY in ("skipped", "read as the unknown symbol")
    cfg = configs(F)[-1]
    params = F.init_params(cfg, np.random.default_rng(0))
    if hasattr(F, "stepper"):  # one step of the sampler against the chunk forward
        state = F.init_state(cfg, 2)
        logits, _ = F.stepper(params, cfg)(np.array([1, 2]), state)
        chunk, _, _ = F.forward(params, cfg, np.array([[1], [2]]), state)
        assert_close(logits, chunk[0], what="step vs forward")
    if hasattr(F, "conditioned_lm"):  # a plain language model of lm's shapes and state
        p, state = F.conditioned_lm(params, cfg, np.eye(cfg.cond_size)[0])
        shapes = lm.param_shapes(lm.ModelConfig(cfg.vocab_size, cfg.cell, cfg.hidden,
                                                cfg.layers, cfg.dropout, cfg.dtype))
        assert {k: p[k].shape for k in shapes} == shapes
        assert [a.shape for a in flat_state(state)] == \
            [(1, cfg.hidden)] * len(flat_state(lm.init_state(cfg, 1)))
    if hasattr(F, "ANSWERS"):
        assert F.ANSWERS in ("label", "tags", "text")


def test_predict_answers_each_kind_with_its_own_options():
    """cli.predict's table of options per ANSWERS covers every kind a family answers with."""
    from charrnn.cli.predict import OPTIONS

    kinds = {F.ANSWERS for F in FAMILIES.values() if hasattr(F, "ANSWERS")}
    assert kinds == set(OPTIONS)


def test_for_task_puts_the_settings_given_over_the_tasks_own_defaults():
    from charrnn.train.config import TrainConfig

    for name, F in FAMILIES.items():
        cfg = TrainConfig.for_task(name, corpus="x.tsv", hidden=7, seed=4)
        assert cfg.task == name and cfg.model.hidden == 7 and cfg.seed == 4
        plain = TrainConfig(task=name, corpus="x.tsv")
        for k in ("batch", "lr", "warmup", "eval_every", "seq"):
            want = F.TRAIN_DEFAULTS.get(k, getattr(plain, k))
            assert getattr(cfg, k) == want, (name, k)
    assert TrainConfig.for_task("tag", corpus="x", batch=5).batch == 5  # given beats default
    assert FAMILIES["tag"].TRAIN_DEFAULTS["batch"] == 32


def test_the_train_options_each_task_takes_follow_from_its_config_and_ignores():
    """`charrnn train` refuses an option the task does not read: what applies is read off each
    family's Config fields and IGNORES, and comes out as this table written by hand."""
    from charrnn.cli.train import _applies, train

    only = {"bidirectional": ("classify", "tag", "seq2seq"), "pooling": ("classify",),
            "class_weights": ("classify",), "input_dropout": ("classify",),
            "label_smoothing": ("classify",), "logit_adjust": ("classify",),
            "val": ("classify", "tag", "seq2seq", "generate"),
            "attention": ("seq2seq",), "seq": ("lm",), "condition": ("generate",)}
    for option in (p.name for p in train.params):
        got = tuple(t for t, F in FAMILIES.items() if _applies(F, option))
        assert got == only.get(option, tuple(FAMILIES)), option


def test_the_classifier_alone_averages_its_weights_by_default():
    from charrnn.train.config import TrainConfig

    assert TrainConfig.for_task("classify", corpus="x.tsv").ema == 0.995
    assert TrainConfig.for_task("classify", corpus="x.tsv", ema=0).ema == 0  # given beats it
    for name in FAMILIES:
        if name != "classify":
            assert TrainConfig.for_task(name, corpus="x.tsv").ema == 0, name
