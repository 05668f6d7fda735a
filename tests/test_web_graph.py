"""The Job page's relations graph (wizd.web.graph): well-formed SVG whose every job node
links to its job, labels escaped, a bounded number of nodes with "+N more"."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, cast

from wizd.model import Job
from wizd.web.graph import relations

SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Stub:
    id: int
    name: str = "look"
    queue: str = "researcher"
    status: str = "pending"


def jobs(*ids: int, **fields: Any) -> list[Job]:
    return [cast(Job, Stub(i, **fields)) for i in ids]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything not well-formed


def links(root: ET.Element) -> dict[str, ET.Element]:
    return {a.get("href", ""): a for a in root.iter(f"{SVG}a")}


def test_every_node_links_to_its_job_coloured_by_status() -> None:
    (me,) = jobs(1, status="running")
    svg = relations(
        me, jobs(2, 3, status="completed"), jobs(4, status="failed"), jobs(5, status="waiting")
    )
    root = parse(svg)
    found = links(root)
    assert set(found) == {f"/jobs/{i}" for i in range(1, 6)}
    assert found["/jobs/1"].get("class") == "node running self"
    assert found["/jobs/4"].get("class") == "node failed"
    assert found["/jobs/2"].get("class") == "node completed"
    assert len(list(root.iter(f"{SVG}line"))) == 4  # one edge per relation


def test_labels_are_escaped() -> None:
    (me,) = jobs(1, name='<script>alert("x")</script>&')
    svg = relations(me, jobs(2, name="a<b>&c"), [], [])
    root = parse(svg)
    assert "<script>" not in svg
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "#2 a<b>&c" in texts
    titles = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert any('<script>alert("x")</script>&' in t for t in titles)


def test_a_group_shows_a_bounded_number_of_nodes_and_says_how_many_more() -> None:
    (me,) = jobs(1)
    svg = relations(me, jobs(*range(100, 150)), jobs(*range(200, 208)), [], limit=8)
    root = parse(svg)
    found = links(root)
    assert len([h for h in found if h.startswith("/jobs/1") and h != "/jobs/1"]) == 7
    assert len([h for h in found if h.startswith("/jobs/2")]) == 8  # 8 fit: no "+N more"
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "+43 more" in texts
    assert sum(t.endswith("more") for t in texts) == 1


def test_no_relations_no_graph() -> None:
    (me,) = jobs(1)
    assert relations(me, [], [], []) == ""
