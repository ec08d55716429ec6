"""charrnn.data.labelled.split: the validation split every labelled family makes, by distinct
text (no text on both sides), stratified by each text's most frequent label, seeded."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data import labelled as L


def test_the_split_is_stratified_seeded_and_disjoint():
    texts = [f"t{i}" for i in range(138)]
    labels = ["a"] * 100 + ["b"] * 30 + ["c"] * 7 + ["d"]
    tr, va = L.split(texts, labels, 0.1, seed=4)
    assert sorted(tr + va) == list(range(len(labels))) and not set(tr) & set(va)
    got = Counter(labels[i] for i in va)
    assert got == {"a": 10, "b": 3, "c": 1}  # each class its share; "d" (one text) trains
    assert (tr, va) == L.split(texts, labels, 0.1, seed=4)
    assert va != L.split(texts, labels, 0.1, seed=5)[1]


def test_copies_of_a_text_stay_together_and_count_under_its_most_frequent_label():
    # "x" appears 5 times, 3 as b and 2 as a: it is one of b's texts, so the b stratum holds
    # 10 distinct texts (b0..b8, x) and the a stratum 9 (a0..a8); 10% of each is one text
    a_texts, b_texts = {f"a{i}" for i in range(9)}, {f"b{i}" for i in range(9)} | {"x"}
    texts = ["x"] * 5 + sorted(a_texts) + sorted(b_texts - {"x"}) + ["a0", "b0"]
    labels = ["b", "a", "b", "a", "b"] + ["a"] * 9 + ["b"] * 9 + ["a", "b"]
    x_held = 0
    for seed in range(30):
        tr, va = L.split(texts, labels, 0.1, seed)
        held = {texts[i] for i in va}
        assert len(held & a_texts) == 1 and len(held & b_texts) == 1, held
        assert not held & {texts[i] for i in tr}
        if "x" in held:  # all five copies, in the validation part
            x_held += 1
            assert [i for i in va if texts[i] == "x"] == [0, 1, 2, 3, 4]
    assert x_held


def test_without_labels_a_share_of_the_distinct_texts():
    texts = ["p", "p", "q", "r", "r", "r"] + [f"s{i}" for i in range(17)]
    tr, va = L.split(texts, None, 0.1, seed=0)
    assert len({texts[i] for i in va}) == 2  # 10% of 20 distinct texts
    assert not {texts[i] for i in va} & {texts[i] for i in tr}


def test_split_examples_keeps_text_target_and_place_together():
    ex = L.Examples(["a", "b", "a", "c"] * 5, list("xyxz") * 5, [f"f:{i}" for i in range(20)])
    train, val = L.split_examples(ex, 0.34, seed=1, stratify=False)
    assert len(train.texts) + len(val.texts) == 20
    for part in (train, val):
        for t, y, w in zip(*part):
            i = int(w.split(":")[1])
            assert (ex.texts[i], ex.targets[i]) == (t, y)
    assert not set(train.texts) & set(val.texts)


examples = st.lists(st.tuples(st.sampled_from("abcdefghijklmnop"), st.sampled_from("XYZ")),
                    min_size=20, max_size=300)


@settings(max_examples=200, deadline=None)
@given(examples, st.sampled_from([0.1, 0.25, 0.5]), st.integers(0, 2**32 - 1), st.booleans())
def test_no_text_on_both_sides_of_a_default_split(rows, frac, seed, stratify):
    # few distinct texts among many rows: most texts have copies, many with other labels too
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    try:
        tr, va = L.split(texts, labels if stratify else None, frac, seed)
    except L.CorpusError:
        return  # too few distinct texts for this fraction: refused, not leaked
    assert sorted(tr + va) == list(range(len(texts)))
    assert not {texts[i] for i in tr} & {texts[i] for i in va}
