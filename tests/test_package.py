"""The top-level package: what `import wizd` offers, what it costs, and the README's
processor example written against it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import wizd
from wizd.agent import Agent, JobContext

README = Path(__file__).parent.parent / "README.md"


def test_agent_and_job_context_are_top_level_names() -> None:
    assert wizd.Agent is Agent
    assert wizd.JobContext is JobContext
    assert {"Agent", "JobContext"} <= set(wizd.__all__)


def test_import_wizd_loads_no_daemon_or_cli_module() -> None:
    code = (
        "import sys, wizd; print(' '.join(m for m in sys.modules if m.startswith(("
        "'wizd.worker', 'wizd.supervisor', 'wizd.cli', 'wizd.processors', 'wizd.metrics'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_readme_processor_example_uses_the_top_level_names() -> None:
    blocks = re.findall(r"```python\n(# myagents.py\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1
    assert "from wizd.agent" not in blocks[0]
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "myagents.py", "exec"), namespace)
    researcher = namespace["researcher"]
    assert isinstance(researcher, wizd.Agent)
    assert "research" in researcher.processors
