"""Fixtures of the Jupyter tests (helpers: jupyter_helpers.py)."""
import pytest

from jupyter_helpers import MessageRecorder


@pytest.fixture
def comm_messages(monkeypatch):
    import comm
    from comm import DummyComm

    recorder = MessageRecorder()

    class RecordingComm(DummyComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            recorder.record(msg_type, data, buffers)

    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return recorder
