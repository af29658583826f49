"""Large and paced bodies: a reader held to a byte rate and a byte stream
whose CRC shows a lost, doubled or reordered buffer."""

import os
import time
import zlib


MiB = 1024 * 1024
GiB = 1024 * MiB


class Pacer:
    """Keeps a consumer at `rate` bytes/s: call consumed(n) after each read;
    it sleeps only as long as the consumer is ahead of the rate."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.t0 = None
        self.total = 0

    def consumed(self, n):
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.total += n
        ahead = self.t0 + self.total / self.rate - now
        if ahead > 0:
            time.sleep(ahead)  # the behaviour: a consumer no faster than rate


class PatternSource:
    """A stream of `total` bytes made by repeating one random block whose
    size (1 MiB + 17) is coprime with every power-of-two buffer size, so a
    lost, doubled or reordered buffer inside the proxy changes the CRC."""

    BLOCK = MiB + 17

    def __init__(self, total, seed_block=None):
        self.total = total
        self.block = seed_block or os.urandom(self.BLOCK)
        self.crc = self.expected_crc()

    def pieces(self):
        """memoryviews of the stream in order (the last one possibly short)."""
        mv = memoryview(self.block)
        left = self.total
        while left > 0:
            n = min(left, len(self.block))
            yield mv[:n]
            left -= n

    def expected_crc(self):
        crc = 0
        for p in self.pieces():
            crc = zlib.crc32(p, crc)
        return crc
