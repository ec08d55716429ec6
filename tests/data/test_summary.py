"""charrnn.data.summary: copies, conflicting labels and the accuracy ceiling, each checked
against a count written here another way (sorting the pairs and counting runs)."""

import random
from itertools import groupby
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data import labelled as L
from charrnn.data import summary as S

NAMES = Path(__file__).resolve().parents[2] / "corpora" / "names"


def by_sorting(texts, labels):
    """{text: {label: count}} by sorting the (text, label) pairs and counting equal runs."""
    out = {}
    for (t, y), run in groupby(sorted(zip(texts, labels))):
        out.setdefault(t, {})[y] = len(list(run))
    return out


def independent(texts, labels):
    counts = by_sorting(texts, labels)
    best = 0
    for per in counts.values():
        best += max(per.values())
    own = set()
    for per in counts.values():
        for y, n in per.items():
            if all(n > m for z, m in per.items() if z != y):
                own.add(y)
    return {"examples": len(texts), "distinct_texts": len(counts),
            "duplicated_texts": sum(1 for per in counts.values() if sum(per.values()) >= 2),
            "conflicting_texts": sum(1 for per in counts.values() if len(per) >= 2),
            "accuracy_ceiling": best / len(texts),
            "classes_without_own_text": sorted(set(labels) - own)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ab", "ba", "c", "dd", "e", "f"]),
                          st.sampled_from("XYZ")), min_size=1, max_size=60))
def test_the_figures_match_an_independent_count(rows):
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    got = S.summarize(texts, labels)
    want = independent(texts, labels)
    assert {k: got[k] for k in want} == want
    assert len(got["conflicts"]) == min(3, want["conflicting_texts"])
    for c in got["conflicts"]:  # each named conflict, with its true counts
        assert c["targets"] == by_sorting(texts, labels)[c["text"]]


def test_a_small_set_by_hand():
    # Abel: English 2, French 1 -> 2 of 3; Smith: 1 and 1 -> 1 of 2; Zed, Ivanov: all
    texts = ["Abel", "Abel", "Abel", "Smith", "Smith", "Zed", "Zed", "Ivanov"]
    labels = ["English", "French", "English", "Scottish", "English", "German", "German",
              "Russian"]
    s = S.summarize(texts, labels)
    assert (s["examples"], s["distinct_texts"], s["duplicated_texts"],
            s["conflicting_texts"]) == (8, 4, 3, 2)
    assert s["accuracy_ceiling"] == 6 / 8
    assert s["classes_without_own_text"] == ["French", "Scottish"]
    assert s["conflicts"] == [{"text": "Abel", "targets": {"English": 2, "French": 1}},
                              {"text": "Smith", "targets": {"Scottish": 1, "English": 1}}]
    assert S.line(s) == ("8 examples, 4 distinct texts, 3 with copies, 2 with more than one of "
                         "their labels (e.g. 'Abel': English 2, French 1; 'Smith': Scottish 1, "
                         "English 1)")
    assert S.ceiling_text(s).startswith("accuracy ceiling 0.750")
    assert S.ceiling_text(s).endswith("no text of their own: French, Scottish")


def test_overlap_counts_examples_and_distinct_texts():
    assert S.overlap(["a", "b", "c"], ["a", "a", "d", "b"]) == \
        {"examples": 3, "distinct_texts": 2, "of_examples": 4}


def test_the_names_hold_465_surnames_under_several_languages_and_scottish_ones_are_english():
    # the figures docs/en/guides/labelled-data.md gives for corpora/names, counted another way too
    ex = L.read(NAMES, "classify")
    s = S.summarize(ex.texts, ex.targets)
    want = independent(ex.texts, ex.targets)
    assert {k: s[k] for k in want} == want
    assert (s["examples"], s["distinct_texts"], s["conflicting_texts"]) == (20050, 17456, 465)
    assert round(s["accuracy_ceiling"], 4) == 0.9722
    scottish = {t for t, y in zip(ex.texts, ex.targets) if y == "Scottish"}
    english = {t for t, y in zip(ex.texts, ex.targets) if y == "English"}
    assert (len(scottish), len(scottish & english)) == (100, 99)
    # every held-out Scottish name of a split is also English: on the validation part of the
    # default split no Scottish name is its own
    tr, va = L.split(ex.texts, ex.targets, 0.1, 0)
    held = S.summarize([ex.texts[i] for i in va], [ex.targets[i] for i in va])
    assert "Scottish" in held["classes_without_own_text"]
    assert not {ex.texts[i] for i in tr} & {ex.texts[i] for i in va}


def test_random_data_with_many_copies_has_a_ceiling_below_one():
    rnd = random.Random(3)
    texts = [rnd.choice("abcde") for _ in range(200)]
    labels = [rnd.choice("XY") for _ in texts]
    s = S.summarize(texts, labels)
    assert s["distinct_texts"] == 5 and s["conflicting_texts"] == 5
    assert 0.5 <= s["accuracy_ceiling"] < 1
