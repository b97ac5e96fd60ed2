"""A stdio "MCP server" that reads stdin forever and never answers: for hang-on-initialize tests.

    python tests/servers/hang.py [--exit-on-eof] [--ignore-sigterm]

By default it outlives the end of its stdin, like a truly hung server, so the client has to
signal it. `--exit-on-eof` makes it exit as soon as stdin closes (cheap teardown);
`--ignore-sigterm` makes it survive SIGTERM too, so only SIGKILL ends it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit-on-eof", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("hang server starting", file=sys.stderr, flush=True)
    for _ in sys.stdin.buffer:  # swallow every request unanswered
        pass
    if not args.exit_on_eof:
        threading.Event().wait()  # stdin closed: stay hung until a signal ends the process


if __name__ == "__main__":
    main()
