"""Child process of tests/test_happi_concurrent.py: parse the database in a loop.

``python happi_reader.py DB``: prints ``ready``, then reads and parses DB over and over
until stdin is closed; exits 1 at the first file that is not valid JSON, else
prints ``{"reads": N, "sizes": M}`` (M distinct entry counts seen).
"""
from __future__ import annotations

import json
import selectors
import sys


def main(db: str) -> int:
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    reads, sizes = 0, set()
    while not sel.select(timeout=0):          # stdin readable = closed by the test: stop
        with open(db, encoding="utf-8") as f:
            text = f.read()
        try:
            sizes.add(len(json.loads(text)))
        except json.JSONDecodeError as exc:
            print(json.dumps({"error": f"{exc} in a file of {len(text)} characters"}), flush=True)
            return 1
        reads += 1
    print(json.dumps({"reads": reads, "sizes": len(sizes)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
