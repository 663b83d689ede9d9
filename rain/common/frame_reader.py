"""Whole length-prefixed frames from a blocking reader (no asyncio: the executor imports it).

The frame format is that of ``framing.py``: a 4-byte little-endian length, then the
payload. One read takes as much as is available, so frames already sent arrive together.
"""
HEADER = 4
MAX_FRAME_SIZE = 2**31 - 1


class FrameTooLarge(ValueError):
    """A frame header announcing more than ``MAX_FRAME_SIZE`` bytes."""


class FrameReader:
    """``recv(n)`` returns up to ``n`` bytes, blocking until at least one is there, and
    ``b""`` at end-of-file."""

    def __init__(self, recv, chunk=1 << 16):
        self.recv = recv
        self.chunk = chunk
        self.buffer = bytearray()
        self.offset = 0

    def next(self):
        """The next frame's payload, or None at end-of-file."""
        while True:
            buffer = self.buffer
            available = len(buffer) - self.offset
            if available >= HEADER:
                size = int.from_bytes(buffer[self.offset:self.offset + HEADER], "little")
                if size > MAX_FRAME_SIZE:
                    raise FrameTooLarge(f"frame of {size} bytes exceeds the limit")
                end = self.offset + HEADER + size
                if end <= len(buffer):
                    frame = bytes(buffer[self.offset + HEADER:end])
                    self.offset = end
                    return frame
                # Read towards a big frame as it comes, not all its header announced.
                want = max(self.chunk, min(end - len(buffer), len(buffer)))
            else:
                want = self.chunk
            if self.offset:
                del buffer[:self.offset]
                self.offset = 0
            data = self.recv(want)
            if not data:
                return None
            buffer += data

    def take_buffered(self):
        """The bytes read but not yet returned as frames (for another reader to go on)."""
        data = bytes(self.buffer[self.offset:])
        self.buffer = bytearray()
        self.offset = 0
        return data
