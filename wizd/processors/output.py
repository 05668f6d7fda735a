"""Bounded capture of a command's stderr: lines cut to a length, a run's log cut to a budget.

A program may write anything: a 40 MB line, a million lines. The daemon reads it in chunks
and holds at most one line's limit at a time; the rest of a long line is counted, not kept,
and the line ends with a marker saying how much was cut. Past a run's budget of lines or
bytes, lines are counted, not logged, and one closing line says how many were dropped.
"""

from __future__ import annotations

import codecs

TRUNCATED = "… [truncated {} bytes]"


class LineSplitter:
    """Splits a byte stream into text lines of at most `limit` bytes each (plus a marker when
    cut), holding at most `limit` bytes whatever the stream's line lengths."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept = bytearray()
        self._dropped = 0
        self._pending = False  # a line has started (possibly empty so far)

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that `chunk` completes."""
        lines: list[str] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            self._take(chunk, start, len(chunk) if end < 0 else end)
            if end < 0:
                return lines
            lines.append(self._finish())
            start = end + 1

    def close(self) -> str | None:
        """The last line, if the stream did not end with a newline."""
        return self._finish() if self._pending else None

    def _take(self, chunk: bytes, start: int, end: int) -> None:
        if end > start:
            self._pending = True
        room = self.limit - len(self._kept)
        take = min(room, end - start)
        self._kept += chunk[start : start + take]
        self._dropped += end - start - take

    def _finish(self) -> str:
        cut = self._dropped > 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # A cut line may end inside a character: leave that character out, and count it.
        text = decoder.decode(bytes(self._kept), final=not cut)
        dropped = self._dropped + len(decoder.getstate()[0])
        self._kept.clear()
        self._dropped = 0
        self._pending = False
        if cut:
            return text + TRUNCATED.format(dropped)
        return text.removesuffix("\r")


class LogBudget:
    """How many lines and bytes of one run's stderr go to the job's log. The first line
    over the budget closes it: that line and every later one are only counted."""

    def __init__(self, lines: int, size: int) -> None:
        self.lines = lines
        self.size = size
        self._lines_left = lines
        self._bytes_left = size
        self.dropped_lines = 0
        self.dropped_bytes = 0

    def admit(self, line: str) -> bool:
        size = len(line.encode(errors="replace"))
        if not self.dropped_lines and self._lines_left > 0 and size <= self._bytes_left:
            self._lines_left -= 1
            self._bytes_left -= size
            return True
        self.dropped_lines += 1
        self.dropped_bytes += size
        return False

    def summary(self) -> str | None:
        """The closing log line, when lines were dropped."""
        if not self.dropped_lines:
            return None
        return (
            f"[wizd] {self.dropped_lines} more stderr lines ({self.dropped_bytes} bytes) not "
            f"logged: a run logs at most {self.lines} lines and {self.size} bytes of stderr"
        )
