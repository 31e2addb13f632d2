"""A weft step in Python: word statistics of an input artifact.

Built with componentize-py against weft's WIT (world `step-component`):

    componentize-py -d ../../wit -w step-component componentize app -o wordcount.wasm

Inputs:
- artifact `text`: the text to count (UTF-8);
- parameter `min-length` (default 1): only words at least this long count;
- parameter `top` (default 3): how many of the most frequent words to report;
- parameter `mode`: `oom` allocates without bound (to show the memory cap).

Outputs: parameters `words` (words counted), `lines`, `distinct`, `top` (the most
frequent word), and `result`, a JSON object of all of them plus the `top`
list. Each step-log line shows up in `weft logs`.
"""

import json
import re
from collections import Counter

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.step import StepInput, StepOutput
from wit_world.imports import log


def _param(input: StepInput, name: str, default: str | None = None) -> str | None:
    # later entries win: weft passes `args` first, then input parameters
    found = default
    for key, value in input.parameters:
        if key == name:
            found = value
    return found


def _int(input: StepInput, name: str, default: int) -> int:
    raw = _param(input, name)
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise Err(f"parameter {name!r} = {raw!r} is not an integer")


class Step(exports.Step):
    def run(self, input: StepInput) -> StepOutput:
        if _param(input, "mode") == "oom":
            hog = []
            while True:
                hog.append(bytearray(1 << 20))
        texts = [a for a in input.artifacts if a.name == "text"]
        if not texts:
            raise Err("input artifact 'text' is missing")
        try:
            text = texts[0].data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Err(f"input artifact 'text' is not UTF-8: {e}")
        min_length = _int(input, "min-length", 1)
        top = _int(input, "top", 3)
        words = [w for w in re.findall(r"[\w']+", text.lower()) if len(w) >= min_length]
        counts = Counter(words)
        # most frequent first, ties alphabetically: the same answer every time
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        lines = len(text.splitlines())
        log.log(log.Level.INFO, f"counted {len(words)} words in {lines} lines")
        log.step_log(f"wordcount: {len(words)} words, {len(counts)} distinct, {lines} lines")
        summary = {
            "words": len(words),
            "lines": lines,
            "distinct": len(counts),
            "top": [[w, n] for w, n in ranked],
        }
        return StepOutput(
            parameters=[
                ("words", str(len(words))),
                ("lines", str(lines)),
                ("distinct", str(len(counts))),
                ("top", ranked[0][0] if ranked else ""),
            ],
            result=json.dumps(summary, separators=(",", ":")),
            artifacts=[],
        )
