"""worker-only: example app without a `web` process (a queue consumer, a bot, a scheduler).
paas starts one `worker` for it by default, as dokku does; it gets no route. It prints a
line every few seconds and exits 0 on SIGTERM.
"""
import signal
import sys
import time

NAME = "worker-only"
VERSION = "v1"


def stop(signum, _frame):
    print(f"{signal.Signals(signum).name} received, exiting", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    print(f"{NAME} {VERSION} working", flush=True)
    n = 0
    while True:
        n += 1
        print(f"{NAME} {VERSION} tick {n}", flush=True)
        time.sleep(2)
