"""A command processor for the acceptance tests: `python accept_command.py`.

Reads the payload JSON on stdin and acts on payload["mode"]:
- "echo": two stderr lines, then a JSON result on stdout naming the job from WIZD_* env.
- "fail": two stderr lines, then exit code 3.
- "spawn": starts a grandchild `sleep 300` in its own process group, writes the pids
  to payload["record"], then sleeps (ignoring SIGTERM when payload["ignore_term"]).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    payload = json.load(sys.stdin)
    mode = payload["mode"]
    if mode == "echo":
        print("reading the payload", file=sys.stderr, flush=True)
        print("writing the result", file=sys.stderr, flush=True)
        job = {k: os.environ[k] for k in ("WIZD_JOB_ID", "WIZD_QUEUE", "WIZD_JOB_NAME")}
        json.dump({"echo": payload, "env": job, "attempt": os.environ["WIZD_ATTEMPT"]}, sys.stdout)
    elif mode == "fail":
        print("step one went fine", file=sys.stderr, flush=True)
        print("boom: the input is bad", file=sys.stderr, flush=True)
        sys.exit(3)
    elif mode == "spawn":
        if payload.get("ignore_term"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        record = payload["record"]
        info = {"pid": os.getpid(), "pgid": os.getpgid(0), "grandchild": child.pid}
        with open(record + ".tmp", "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(record + ".tmp", record)
        time.sleep(300)
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
