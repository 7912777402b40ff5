"""Performance MIDI <-> MTF ("MIDI text format"), the text form M3 and CLaMP 3 read.

MTF (implementation notes §3.2): line 1 is ``ticks_per_beat <n>``; then one line per message of
mido's ``merged_track`` (all tracks merged, delta times in ticks, one final ``end_of_track``):
the values of ``msg.dict()`` in order, space-joined, passed through ``unicode_escape``; lines are
joined by ``"\\n"`` without a final newline. Channel messages read ``type time channel ...``
(``note_on 455 0 74 0``), meta messages ``type ... time`` (``set_tempo 500000 0``), byte data is
a Python list (``sysex 20 [65, 16, 66]``).

The official conversion is run with ``--m3_compatible``, which drops the text-like meta
messages below. CLaMP 2's converter also dropped ``sysex`` and ``sequencer_specific``
(``drop_sysex=True``). ``mido`` is the library the official code uses; it is imported lazily.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clamp3.inputs import extensions
from clamp3.utils.errors import InputError
from clamp3.utils.reasons import describe_exception

MIDI_EXTENSIONS = extensions(kinds=("midi",))

# Meta message types removed by the official ``--m3_compatible`` option.
M3_DROPPED_META = frozenset(
    ["text", "copyright", "track_name", "instrument_name", "lyrics", "marker", "cue_marker", "device_name"]
)
# Additionally removed by CLaMP 2's converter.
CLAMP2_DROPPED = frozenset(["sysex", "sequencer_specific"])

_BYTES = re.compile(r"[\[(]([0-9, ]*)[\])]")


def midi_to_mtf(path: str | os.PathLike, drop_sysex: bool = False) -> str:
    """A MIDI file -> MTF text, byte-identical to the official ``--m3_compatible`` conversion.

    ``drop_sysex=True`` gives the CLaMP 2 variant (``sysex`` and ``sequencer_specific`` dropped
    as well). Raises ``InputError`` naming the file when it is empty, unreadable, not a valid
    MIDI file or of type 2 (which has no single timeline to merge into one track).
    """
    import mido

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InputError(path, "empty file (0 bytes)")
        midi = mido.MidiFile(path)
        if midi.type == 2:  # mido cannot merge it either: a TypeError would read as corruption
            raise InputError(
                path,
                "MIDI type 2 (independent sequences, one per track) is not supported: its tracks "
                "do not play together; save it as type 1 or split it into one file per track",
            )
        merged = midi.merged_track  # mido 1.3.1+ merges lazily, so errors can surface here
    except InputError:
        raise
    except OSError as exc:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
        raise InputError(path, f"corrupt MIDI file ({exc})") from exc
    except Exception as exc:  # mido raises EOFError, ValueError, KeyError, ... on bad data
        raise InputError(path, f"corrupt MIDI file ({describe_exception(exc)})") from exc

    return messages_to_mtf(midi.ticks_per_beat, merged, drop_sysex)


def messages_to_mtf(ticks_per_beat: int, messages: Iterable[Any], drop_sysex: bool = False) -> str:
    """MTF text of mido messages already merged into one track (``midi.merged_track``): the
    ``ticks_per_beat`` line, then one line per message the official conversion keeps."""
    lines = [f"ticks_per_beat {ticks_per_beat}"]
    for msg in messages:
        if msg.is_meta and msg.type in M3_DROPPED_META:
            continue
        if drop_sysex and msg.type in CLAMP2_DROPPED:
            continue
        lines.append(message_to_line(msg))
    return "\n".join(lines)


def message_to_line(msg: Any) -> str:
    """One mido message -> its MTF line."""
    text = " ".join(str(value) for value in msg.dict().values()).strip()
    return text.encode("unicode_escape").decode("utf-8")


def mtf_to_midi(text: str, out_path: str | os.PathLike) -> Path:
    """MTF text -> a MIDI file (type 1, one track, as the official ``batch_mtf2midi.py``).

    Every MTF line becomes one message of the track, so ``midi_to_mtf`` of the written file
    gives ``text`` back when ``text`` came from ``midi_to_mtf``. The file is written
    atomically. Raises ``ValueError`` naming the line number of a malformed line.
    """
    import mido

    from clamp3.utils.io import atomic_path

    lines = text.splitlines()
    head = lines[0].split(" ") if lines else []
    if len(head) != 2 or head[0] != "ticks_per_beat" or not head[1].isdigit():
        raise ValueError("MTF line 1 must be 'ticks_per_beat <n>'")
    midi = mido.MidiFile(type=1, ticks_per_beat=int(head[1]))
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            track.append(line_to_message(line))
        except Exception as exc:
            raise ValueError(f"MTF line {number}: cannot parse {line[:80]!r} ({exc})") from exc
    with atomic_path(out_path) as tmp:
        midi.save(tmp)
    return Path(out_path)


def line_to_message(line: str) -> Any:
    """One MTF line -> a mido message (the inverse of :func:`message_to_line`)."""
    import mido

    kind, _, rest = line.partition(" ")
    if kind == "unknown_meta":  # type_byte data time
        type_byte, data, time = _split_bytes(rest)
        return _checked(mido.UnknownMetaMessage(int(type_byte[0]), data=data, time=_number(time[0])))
    try:
        template = mido.Message(kind)
        build = mido.Message
    except (ValueError, LookupError):
        template = mido.MetaMessage(kind)
        build = mido.MetaMessage
    fields = [key for key in template.dict() if key != "type"]
    defaults = template.dict()
    if any(isinstance(defaults[key], str) for key in fields):
        # text-like meta: "<type> <text with spaces> <time>"; only the text may hold spaces
        value, _, time = rest.rpartition(" ")
        values = [value.encode("ascii").decode("unicode_escape"), time]
    elif "data" in fields:
        before, data, after = _split_bytes(rest)
        values = [*before, data, *after]
    else:
        values = rest.split(" ") if rest else []
    if len(values) != len(fields):
        raise ValueError(f"{kind} expects {len(fields)} values ({', '.join(fields)}), got {len(values)}")
    kwargs = {
        key: value if isinstance(defaults[key], str) or key == "data" else _number(value)
        for key, value in zip(fields, values)
    }
    return _checked(build(kind, **kwargs))


def _checked(message: Any) -> Any:
    """``message``, refused when its delta time is not a whole number of ticks or negative: mido
    accepts both when the message is made and fails only when the file is saved, naming no line."""
    if not isinstance(message.time, int):
        raise ValueError(f"delta time {message.time} is not a whole number of ticks")
    if message.time < 0:
        raise ValueError(f"negative delta time {message.time}")
    return message


def _split_bytes(rest: str) -> tuple[list[str], list[int], list[str]]:
    """``"20 [1, 2, 3]"`` -> (["20"], [1, 2, 3], []): the words around a byte list."""
    match = _BYTES.search(rest)
    if match is None:
        raise ValueError("missing byte list")
    body = match.group(1).strip()
    data = [int(v) for v in body.split(",")] if body else []
    before = rest[: match.start()].split()
    after = rest[match.end() :].split()
    return before, data, after


def _number(value: str) -> int | float:
    """An MTF value: a whole number (``"64"``, ``"64.0"``), or a float where mido has one (the
    29.97 frames per second of ``smpte_offset``)."""
    number = float(value)
    return int(number) if number.is_integer() else number
