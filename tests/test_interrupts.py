"""A Ctrl-C is never lost: the KeyboardInterrupt of a SIGINT that arrives while a finalizer
runs is dropped by Python ("Exception ignored in …"); under ``interrupts.watching`` the next
checkpoint raises it again, and the command line ends with 130."""

from __future__ import annotations

import gc
import signal
import sys

import pytest

from rhcloud import cli, interrupts


class _InterruptedWhileFinalized:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised in here
        for _ in range(10):  # bytecodes after the signal: where the handler runs
            pass


def _swallowed_interrupt() -> None:
    obj = _InterruptedWhileFinalized()
    del obj
    gc.collect()


def test_python_drops_an_interrupt_raised_in_a_finalizer(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    with interrupts.watching():
        _swallowed_interrupt()  # returns: the KeyboardInterrupt went nowhere
        assert interrupts.interrupted()
        with pytest.raises(KeyboardInterrupt):
            interrupts.checkpoint()
    assert dropped == [KeyboardInterrupt]  # "Exception ignored in …"
    assert not interrupts.interrupted()  # the record ends with the block
    interrupts.checkpoint()  # unwatched: nothing to raise
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_swallowed_interrupt_ends_the_command_with_130(monkeypatch, capsys):
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
    def command(_args) -> int:
        _swallowed_interrupt()
        return 0  # the command itself carried on, as a run writing its outputs did

    monkeypatch.setitem(cli.COMMANDS, "run", command)
    assert cli.main(["run", "run.yaml"]) == cli.INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
