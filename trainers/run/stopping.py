"""Stopping on request: the first SIGINT/SIGTERM/SIGHUP ends the run after the current steps."""

import signal
import sys
import threading


class StopRequests:
    """Turns the first SIGINT/SIGTERM/SIGHUP into a request to stop after the current loop call.

    SIGHUP is what a closed terminal (or a dropped ssh session) sends: it is handled
    like SIGTERM, so the run still ends with a checkpoint.

    A second SIGINT (Ctrl-C) is not caught: it interrupts at once, leaving the last
    checkpoint as it was. Handlers are only installed in the main thread.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _request(self, signum, frame):
        del frame
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\nsignal {signum}: stopping after the current steps and saving a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False
