"""A command job for the interrupt tests: it reports every SIGINT and
SIGTERM it receives on stdout and keeps running, so only SIGKILL ends it."""

import signal
import time


def report(signum, _frame):
    print(f"got {signal.Signals(signum).name}", flush=True)


signal.signal(signal.SIGINT, report)
signal.signal(signal.SIGTERM, report)
print("ready", flush=True)
while True:
    time.sleep(0.05)
