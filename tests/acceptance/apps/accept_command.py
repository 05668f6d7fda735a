"""A command processor for the acceptance tests: `python accept_command.py`.

Reads the payload JSON on stdin and acts on payload["mode"]:
- "echo": two stderr lines, then a JSON result on stdout naming the job from WIZD_* env.
- "fail": two stderr lines, then exit code 3.
- "spawn": starts a grandchild `sleep 300` in its own process group, writes the pids
  to payload["record"], then sleeps (ignoring SIGTERM when payload["ignore_term"]).
- "single": takes an exclusive lock on payload["lock"] (or writes payload["lock"] +
  ".overlap" and exits 1 if another run holds it), starts a grandchild `sleep 300`, writes
  both pids to payload["record"] + ".ATTEMPT", then sleeps until payload["release"] exists.
- "nested": writes payload["depth"] nested JSON arrays to stdout.
- "stderr": writes one line of payload["long"] bytes, then payload["lines"] lines of
  payload["width"] bytes, to stderr (in big writes), then `{"ok": true}` to stdout.
- "stdout": writes payload["size"] bytes to stdout.
"""

from __future__ import annotations

import fcntl
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
    elif mode == "single":
        lock = open(payload["lock"], "w")  # noqa: SIM115 - held until the process ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            open(payload["lock"] + ".overlap", "w").close()
            sys.exit(1)
        grandchild = subprocess.Popen(["sleep", "300"])  # in our process group
        record = f"{payload['record']}.{os.environ['WIZD_ATTEMPT']}"
        with open(record + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "grandchild": grandchild.pid}, f)
        os.replace(record + ".tmp", record)
        while not os.path.exists(payload["release"]):
            time.sleep(0.05)
        json.dump({"pid": os.getpid()}, sys.stdout)
    elif mode == "nested":
        sys.stdout.write("[" * payload["depth"] + "]" * payload["depth"])
    elif mode == "stderr":
        err = sys.stderr.buffer
        err.write(b"x" * payload["long"] + b"\n")
        line = b"y" * (payload["width"] - 1) + b"\n"
        for start in range(0, payload["lines"], 1000):
            err.write(line * min(1000, payload["lines"] - start))
        err.flush()
        json.dump({"ok": True}, sys.stdout)
    elif mode == "stdout":
        sys.stdout.buffer.write(b"z" * payload["size"])
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
