"""The limits every network, file and setting shares, and the memory available now (no
bstdg imports: the export readers and the independent verifier use them without loading
the engine)."""

import os

# Thresholds must fit the int16 of the C header and the 16-bit words of the hex files.
THRESHOLD_MAX = 2 ** 15 - 1
# Largest t_max a network, a file or a setting may hold: every spike time 0..t_max is exact
# in int32 and in float32 (whose integers are exact up to 2^24), so no reader or engine overflows.
T_MAX_LIMIT = 2 ** 24


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
