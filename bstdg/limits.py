"""The limits every network, file and setting shares (no imports: the export readers and
the independent verifier use them without loading the engine)."""

# Thresholds must fit the int16 of the C header and the 16-bit words of the hex files.
THRESHOLD_MAX = 2 ** 15 - 1
# Largest t_max a network, a file or a setting may hold: every spike time 0..t_max is exact
# in int32 and in float32 (whose integers are exact up to 2^24), so no reader or engine overflows.
T_MAX_LIMIT = 2 ** 24
