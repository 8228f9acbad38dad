"""Stop signals held while torch loads (`stopping.stop_signals_held`)."""

import os
import signal
import threading
import time

import pytest

from napari_lgg_unet.engine.stopping import stop_signals_held


def test_a_ctrl_c_held_while_another_thread_runs_waits_for_release_then_reaches_the_handler_set_in_the_block():
    """Held by the thread's signal mask, a Ctrl-C went to another thread (numpy's and torch's own threads, which do
    not block it) and Python raised it in the main thread at once, inside the import it was held from."""
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        with stop_signals_held() as release:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:  # Python code runs on, as torch's import does
                sum(range(1000))
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as the CLI's, once torch has loaded
            with pytest.raises(KeyboardInterrupt):
                release()
    finally:
        done.set()
        other.join()


def test_a_stop_signal_noted_after_release_is_delivered_as_the_block_ends():
    """A handler set inside the block (the CLI's) gives the noting one back as it ends: a stop then is not lost."""
    answered = []
    previous = signal.signal(signal.SIGUSR1, lambda number, _frame: answered.append(number))
    try:
        with stop_signals_held() as release:
            release()
            os.kill(os.getpid(), signal.SIGUSR1)
            sum(range(1000))
            assert answered == []
        assert answered == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_stop_signal_noted_after_a_stop_was_answered_is_dropped_and_the_callers_handler_is_back():
    """A second Ctrl-C while the first one's clean-up ran was delivered again as the block ended: it raised in the
    clean-up of the stop already under way."""
    answered = []
    previous = signal.signal(signal.SIGUSR1, lambda number, _frame: answered.append(number))
    stopped = threading.Event()
    try:
        with stop_signals_held(stopped.is_set) as release:
            release()
            stopped.set()  # as the CLI's handler does on the first stop
            os.kill(os.getpid(), signal.SIGUSR1)
            sum(range(1000))
        assert answered == []
        os.kill(os.getpid(), signal.SIGUSR1)
        sum(range(1000))
        assert answered == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
