"""The activation view's data: validation text the model never trained on, and every unit's
recorded values, quantised to a byte over its series' range, unit by unit."""

import base64

import numpy as np

from charrnn.inside.record import record
from charrnn.report import activations as A
from charrnn.report import runs as R
from charrnn.report import views as V


def test_every_units_values_are_stored_a_byte_each_over_its_range(family_runs):
    run = R.read(family_runs["lstm"])
    data = V.validation_data(run)
    text = A.validation_text(run, data, 120)
    assert 50 < len(text) <= 120 and text in "".join(run.ckpt.vocab.chars[i] for i in data.val)
    rec = record(run.ckpt, text)
    got = A.payload(rec)
    assert got["text"] == text and got["starts"] == [0]
    assert [s["name"] for s in got["series"]] == [f"l0.{s}" for s in "ifogch"]
    for s in got["series"]:
        q = np.frombuffer(base64.b64decode(s["values"]), np.uint8).reshape(s["units"], len(text))
        for j in range(s["units"]):
            v = rec.unit(f"{s['name']}.{j}")
            if s["name"] == "l0.c":
                v = np.tanh(v)  # the unbounded cell state, squashed as Karpathy et al. show it
            lo, hi = (0.0, 1.0) if s["name"][-1] in "ifo" else (-1.0, 1.0)
            expect = [min(255, max(0, round((x - lo) / (hi - lo) * 255))) for x in v]
            assert q[j].tolist() == expect, f"{s['name']}.{j}"
            assert s["spread"][j] == round(float(np.std(v)), 4)


def test_an_encoders_texts_are_its_validation_sources_one_span_each(family_runs):
    run = R.read(family_runs["rev"])
    data = V.validation_data(run)
    text = A.validation_text(run, data, 30)
    lines = text.split("\n")
    vocab = run.ckpt.vocab.chars
    assert lines == ["".join(vocab[i] for i in ids) for ids, _ in data.val_groups[:len(lines)]]
    assert sum(map(len, lines[:-1])) < 30 <= sum(map(len, lines))
    got = A.payload(record(run.ckpt, text))
    assert got["text"] == "".join(lines)
    assert got["starts"] == list(np.cumsum([0] + [len(x) for x in lines[:-1]]))
    assert {s["name"] for s in got["series"]} >= {"l0.fw.h", "l0.bw.h"}
