"""M3 patchilisation: ABC / MTF text -> (n_patches, 64) character-id patches.

This reproduces the official ``M3Patchilizer.encode(text, add_special_patches=True)`` with
truncation off (what ``extract_clamp3.py`` runs; implementation notes §3.3), byte for byte:

1. remove every ``"L:1/8\\n"`` (CLaMP 3 / M3; CLaMP 2 keeps it), transliterate to ASCII with
   ``unidecode`` as of version 1.3.6 (the official pin; see ``_UNIDECODE_136``);
2. split into lines that keep their ``"\\n"``;
3. MTF (first word ``ticks_per_beat``): merge consecutive lines of the same message type into
   one patch, joined by ``"\\t"``, while the patch stays within 62 characters;
4. ABC: header / ``%%`` lines are one patch each; other lines are cut after each barline, text
   after the last barline of a line is dropped and the last bar keeps the ``"\\n"``;
5. a BOS patch (64 x 1) before and an EOS patch (1 then 63 x 2) after;
6. each patch -> ``[1] + ord(chars) + [2]``, cut to 64 ids (long bars lose their EOS), padded with 0.
"""

from __future__ import annotations

import re

import numpy as np
from unidecode import unidecode

PATCH_SIZE = 64
PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3

# Official bar delimiters, in the official alternation order (longest match is not implied:
# ``re`` tries them left to right, so "|]" is found before "|").
BAR_DELIMITERS = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BAR_SPLIT = re.compile("(" + "|".join(map(re.escape, BAR_DELIMITERS)) + ")")
_LINES = re.compile(r".*?\n|.*$")
_DEFAULT_LENGTH = "L:1/8\n"

# Code points whose transliteration changed after Unidecode 1.3.6, the version the official
# environment pins (found by comparing 1.3.6 with 1.4.0 over all code points). Mapping them to
# the 1.3.6 strings first makes the result independent of the installed Unidecode (the
# replacements are ASCII, which unidecode leaves alone). An empty string means 1.3.6 dropped it.
_UNIDECODE_136 = {
    0x014A: "ng",
    0x014B: "NG",
    0x1E9E: "Ss",
    0x1D6D5: "tai",
    0x1F19C: "[2nc-Scr]",
    0x1F1A9: "[Loss-less]",
    **dict.fromkeys([0x2103, 0x2109, 0x211F, 0x2123, 0x214D, 0x30A0, 0x30FB, 0x30FC], ""),
    **dict.fromkeys(range(0x2654, 0x2668), ""),  # chess pieces and card suits
    **dict.fromkeys([0x1F16A, 0x1F16B, 0x1F16C], ""),
}


def to_ascii(text: str) -> str:
    """``unidecode`` as the official environment (Unidecode 1.3.6) transliterates."""
    if not text.isascii():
        text = unidecode(text.translate(_UNIDECODE_136))
    return text


def patchify(text: str, strip_default_length: bool = True) -> np.ndarray:
    """ABC or MTF text -> int32 array (n_patches, 64) with BOS and EOS patches, untruncated.

    ``strip_default_length=False`` is the CLaMP 2 variant (``"L:1/8\\n"`` is kept).
    Raises ``ValueError`` when nothing is left to patch (empty text), where the official
    patchiliser fails too.
    """
    return patches_to_array(split_patches(text, strip_default_length))


def split_patches(text: str, strip_default_length: bool = True) -> list[str]:
    """The patch strings of ``text`` (without BOS/EOS), before conversion to ids."""
    if strip_default_length:
        text = text.replace(_DEFAULT_LENGTH, "")
    lines = [line for line in _LINES.findall(to_ascii(text)) if line]
    if not lines:
        raise ValueError("nothing to patchify: the text is empty")
    if lines[0].split(" ")[0] == "ticks_per_beat":
        return _mtf_patches(lines)
    return _abc_patches(lines)


def _mtf_patches(lines: list[str]) -> list[str]:
    """Merge runs of one message type: ``"note_on 0 0 60 80\\t100 1 40 70\\n"``."""
    patches: list[str] = []
    patch = ""
    for line in lines:
        words = line.split(" ")
        args = " ".join(words[1:])
        # The official test is a prefix test on the whole patch, not a type comparison.
        if patch.startswith(words[0]) and len(patch) + len(args) <= PATCH_SIZE - 2:
            patch = patch[:-1] + "\t" + args
        else:
            if patch:
                patches.append(patch)
            patch = line
    if patch:
        patches.append(patch)
    return patches


def _abc_patches(lines: list[str]) -> list[str]:
    patches: list[str] = []
    for line in lines:
        if len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%")):
            patches.append(line)
            continue
        bars = split_bars(line)
        if bars:
            bars[-1] += "\n"
            patches.extend(bars)
    return patches


def split_bars(line: str) -> list[str]:
    """Cut a tune-body line into bars, each ending with its barline.

    A leading barline is glued to the first bar; text after the last barline is dropped (so
    a line without a barline gives no bars). Empty pieces between adjacent delimiters are
    discarded before pairing text with delimiters, exactly as the official code does, which
    can pair a delimiter with the following text (e.g. ``"a|]|b"`` -> ``["a|]", "|b"]``).
    """
    pieces = [p for p in _BAR_SPLIT.split(line) if p]
    if pieces and pieces[0] in BAR_DELIMITERS:
        if len(pieces) == 1:  # a lone barline: the official code raises IndexError here
            return []
        pieces = [pieces[0] + pieces[1], *pieces[2:]]
    return [pieces[2 * i] + pieces[2 * i + 1] for i in range(len(pieces) // 2)]


def patches_to_array(patches: list[str]) -> np.ndarray:
    """Patch strings -> int32 (len + 2, 64): BOS row, one row per patch, EOS row."""
    out = np.zeros((len(patches) + 2, PATCH_SIZE), dtype=np.int32)
    out[0] = BOS_ID
    out[-1] = EOS_ID
    out[-1, 0] = BOS_ID
    for row, patch in enumerate(patches, start=1):
        chars = np.frombuffer(patch[: PATCH_SIZE - 1].encode("ascii"), dtype=np.uint8)
        out[row, 0] = BOS_ID
        out[row, 1 : 1 + len(chars)] = chars
        if len(chars) < PATCH_SIZE - 1:
            out[row, 1 + len(chars)] = EOS_ID
    return out


def unpatchify(patches: np.ndarray) -> str:
    """Patches -> text: the characters of every patch (special ids dropped), concatenated.

    The inverse of :func:`patchify` up to what patching discards (``L:1/8`` lines, text after
    a line's last barline, characters beyond 62 per patch); merged MTF lines come back joined
    by ``"\\t"``.
    """
    array = np.asarray(patches)
    return "".join(chr(int(i)) for i in array.reshape(-1) if i > MASK_ID)
