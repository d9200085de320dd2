"""LSAT Section 7 (Bock & Lieberman, 1970): 1,000 examinees, 5 items, as 32 pattern counts.

The counts are R mirt's and ltm's ``LSAT7`` data set.
"""

import numpy as np

PATTERN_COUNTS = {
    "00000": 12, "00001": 19, "00010": 1, "00011": 7, "00100": 3, "00101": 19, "00110": 3, "00111": 17,
    "01000": 10, "01001": 5, "01010": 3, "01011": 7, "01100": 7, "01101": 23, "01110": 8, "01111": 28,
    "10000": 7, "10001": 39, "10010": 11, "10011": 34, "10100": 14, "10101": 51, "10110": 15, "10111": 90,
    "11000": 6, "11001": 25, "11010": 7, "11011": 35, "11100": 18, "11101": 136, "11110": 32, "11111": 308,
}

# mirt(LSAT7full, 1, itemtype = "2PL"); coef(..., IRTpars = TRUE); logLik(...)
MIRT_2PL_A = [0.988, 1.081, 1.706, 0.765, 0.736]
MIRT_2PL_B = [-1.879, -0.748, -1.058, -0.635, -2.520]
MIRT_2PL_LOGLIK = -2658.805


def matrix_from_patterns(counts: dict[str, int]) -> np.ndarray:
    """One row per examinee, one column per item, from {response pattern: examinees}."""
    rows = [[int(ch) for ch in pattern] for pattern, count in counts.items() for _ in range(count)]
    return np.array(rows, dtype=np.uint8)


def response_matrix() -> np.ndarray:
    return matrix_from_patterns(PATTERN_COUNTS)
