"""How busy a bottleneck was: a thread samples the egress interface's tx_bytes (after its
token bucket) every --interval while a fairness run goes on; utilization is the bytes sent
while the link carried traffic over what the bucket's rate allows in that time."""

from __future__ import annotations

import subprocess
import threading
import time

from bmv2_env.peers import run_in

ACTIVE_SHARE = 0.05   # an interval with less than this share of the rate counts as idle


def utilization(samples: list[tuple[float, int]], rate_mbit: float) -> dict:
    """From (time, tx_bytes) samples: the mean rate between the first and the last interval
    that carried at least ACTIVE_SHARE of the rate, as a share of the rate; and that time."""
    limit = rate_mbit * 1e6 / 8
    busy = [i for i in range(1, len(samples))
            if (samples[i][1] - samples[i - 1][1])
            >= ACTIVE_SHARE * limit * (samples[i][0] - samples[i - 1][0])]
    if not busy:
        return {"utilization": None, "busy_seconds": 0.0}
    first, last = busy[0] - 1, busy[-1]
    seconds = samples[last][0] - samples[first][0]
    sent = samples[last][1] - samples[first][1]
    return {"utilization": round(sent / (limit * seconds), 3) if seconds else None,
            "busy_seconds": round(seconds, 2)}


class TxSampler:
    """tx_bytes of `ifname` (in `netns`, None: here) every `interval` s until stop()."""

    def __init__(self, ifname: str, netns: str | None, interval: float = 0.5) -> None:
        self.ifname, self.netns, self.interval = ifname, netns, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> int:
        path = f"/sys/class/net/{self.ifname}/statistics/tx_bytes"
        if self.netns is None:
            with open(path) as f:
                return int(f.read())
        # sysfs shows the namespace of the process that mounted it: read it from inside
        return int(run_in(self.netns, ["cat", path], capture_output=True, text=True,
                          check=True).stdout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.read()))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "TxSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
