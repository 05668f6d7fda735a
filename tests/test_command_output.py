"""The bounded stderr capture of command processors (wizd/processors/output.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wizd.processors.output import TRUNCATED, LineSplitter, LogBudget


def expected_lines(stream: bytes, limit: int) -> list[str]:
    """What the splitter must give for valid UTF-8: each line's first `limit` bytes (whole
    characters), with a marker counting the rest when cut."""
    raw = stream.split(b"\n")
    if raw[-1] == b"":
        raw.pop()
    out = []
    for line in raw:
        if len(line) <= limit:
            out.append(line.decode(errors="replace").removesuffix("\r"))
            continue
        text = line[:limit].decode(errors="ignore")  # valid UTF-8: only the last may be cut
        out.append(text + TRUNCATED.format(len(line) - len(text.encode())))
    return out


@given(
    lines=st.lists(st.text(alphabet="ab\r€😀", max_size=40), max_size=8),
    trailing=st.booleans(),
    limit=st.integers(1, 30),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_lines_are_cut_at_the_limit_however_the_stream_is_chunked(
    lines: list[str], trailing: bool, limit: int, cuts: list[int]
) -> None:
    stream = "\n".join(lines).encode() + (b"\n" if trailing and lines else b"")
    splitter = LineSplitter(limit)
    got: list[str] = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(stream)} | {len(stream)}):
        got += splitter.feed(stream[start:cut])
        start = cut
        assert len(splitter._kept) <= limit
    last = splitter.close()
    if last is not None:
        got.append(last)
    assert got == expected_lines(stream, limit)


def test_the_budget_closes_at_the_first_line_past_it_and_counts_the_rest() -> None:
    budget = LogBudget(lines=3, size=10)
    assert [budget.admit(line) for line in ["abcd", "efgh", "ijk", "l", "m"]] == [
        True,
        True,
        False,  # 8 + 3 bytes is past 10
        False,  # closed, though it would fit
        False,
    ]
    assert budget.summary() == (
        "[wizd] 3 more stderr lines (5 bytes) not logged: "
        "a run logs at most 3 lines and 10 bytes of stderr"
    )
    assert LogBudget(lines=3, size=10).summary() is None
