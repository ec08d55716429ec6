"""Which encoding a text file is in, judged from its bytes: the hint `read_corpus` gives when a
file is not valid in the encoding it was read with (charrnn.data.text).

Decoding with the wrong one of the common double-byte encodings mostly succeeds, as garble, and
latin-1 decodes any bytes at all; so a hint is only given where the decoded text looks like its
language: most of its non-ASCII characters are ones such text is made of.
"""

from __future__ import annotations

import codecs

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # UTF-32 LE first:
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # it starts ff fe too


# What each candidate encoding's text should look like once decoded: the share of its non-ASCII
# characters that are ones such text is made of. Decoding with the wrong one of these
# double-byte encodings mostly succeeds, but gives rare ideographs (GBK read as Big5 and back) or
# half-width katakana (GBK read as Shift-JIS), so the share tells them apart.
_COMMON_HAN = set(  # the most frequent ideographs of Chinese text, simplified and traditional
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之"
    "年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样"
    "理心她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将"
    "两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信"
    "表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔"
    "這們個來為說時會對從後裡於麼沒動現當還進樣點與機長見問開關經發國過學種實無萬東車門")


def _share(text: str, good) -> float:
    """The share of text's non-ASCII characters for which good(c) holds (0 without any)."""
    wide = [c for c in text if ord(c) > 127]
    return sum(map(good, wide)) / len(wide) if wide else 0.0


def _cjk_punct(c: str) -> bool:
    return "\u3000" <= c <= "\u303f" or "\uff01" <= c <= "\uff5e"


# encoding: (what the text is, does a decoded character look right, the largest share of
# non-ASCII characters such text has: a European language's accents are sparse, while Chinese
# read as Windows-1252 is accented letters throughout)
_LOOKS = {
    "gb18030": ("Chinese (GB18030/GBK)", lambda c: c in _COMMON_HAN or _cjk_punct(c), 1.0),
    "big5": ("traditional Chinese (Big5)", lambda c: c in _COMMON_HAN or _cjk_punct(c), 1.0),
    "shift_jis": ("Japanese (Shift-JIS)",
                  lambda c: "\u3040" <= c <= "\u30ff" or _cjk_punct(c), 1.0),  # kana
    "cp1252": ("Western European (Windows-1252)",
               lambda c: c.isalpha() or c in "€‘’“”–—…•°£§©®«»·×÷¿¡", 0.3),
}


def utf16_without_mark(raw: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when NUL bytes sit at one parity only, as in mostly-Latin
    UTF-16 text without a byte-order mark; else None."""
    head = raw[:4096]
    if len(head) < 4:
        return None
    odd, even = head[1::2].count(0), head[0::2].count(0)
    if odd > len(head) // 8 and even == 0:
        return "utf-16-le"
    if even > len(head) // 8 and odd == 0:
        return "utf-16-be"
    return None


def encoding_hint(raw: bytes, tried: str) -> str:
    """What to tell someone whose file is not valid `tried`, judged by what its bytes look like:
    a byte-order mark; UTF-16 without one; UTF-8 that is damaged or cut off mid-character; or
    the encodings among GB18030, Big5, Shift-JIS and Windows-1252 under which the text reads as
    that language (each strictly decoded, and most of its non-ASCII characters ones such text is
    made of). Names several when unsure, and never suggests latin-1 for text that is not."""
    mark = next((name for bom, name in BOMS if raw.startswith(bom)), None)
    if mark:
        return f"it starts with a {mark.upper()} byte-order mark: give --encoding {mark}"
    wide = utf16_without_mark(raw)
    if wide:
        return f"it looks like UTF-16 without a byte-order mark: give --encoding {wide}"
    if codecs.lookup(tried).name != "utf-8":
        try:
            raw.decode("utf-8")
            return "it is valid UTF-8: give --encoding utf-8"
        except UnicodeDecodeError:
            pass
    else:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":  # the first error is at the very end
                return ("it is UTF-8 cut off in the middle of its last character (a truncated "
                        "copy?): remove the incomplete bytes at its end")
        repaired = raw.decode("utf-8", "replace")
        damaged = repaired.count("\ufffd")
        if _share(repaired, lambda c: c != "\ufffd") >= 0.9:
            return (f"the rest is valid UTF-8, with {max(damaged, 1)} damaged character"
                    f"{'s' if damaged > 1 else ''} (a file cut or joined mid-character?): repair "
                    f"the file rather than read it with another encoding")
    fits = []
    for name, (what, good, dense) in _LOOKS.items():
        try:
            text = raw.decode(name)
        except UnicodeDecodeError:
            continue
        share = _share(text, good)
        if share >= 0.5 and sum(ord(c) > 127 for c in text) <= dense * len(text):
            fits.append((share, name, what))
    fits.sort(key=lambda f: -f[0])
    if len(fits) == 1 or (fits and fits[0][0] - fits[1][0] > 0.3):
        return f"it reads as {fits[0][2]}: give --encoding {fits[0][1]}"
    if fits:
        return "it could be " + " or ".join(f"{what} (--encoding {name})"
                                           for _, name, what in fits)
    return ("give the file's encoding with --encoding (gb18030, big5, shift_jis, utf-16, "
            "cp1252 and latin-1 are common; `file -i` may know)")
