"""LSAT Section 6 (Bock & Lieberman, 1970): 1,000 examinees, 5 items, as 32 pattern counts.

The counts are R ltm's ``LSAT`` and mirt's ``LSAT6`` data set.
"""

import numpy as np

from .lsat7 import matrix_from_patterns

PATTERN_COUNTS = {
    "00000": 3, "00001": 6, "00010": 2, "00011": 11, "00100": 1, "00101": 1, "00110": 3, "00111": 4,
    "01000": 1, "01001": 8, "01010": 0, "01011": 16, "01100": 0, "01101": 3, "01110": 2, "01111": 15,
    "10000": 10, "10001": 29, "10010": 14, "10011": 81, "10100": 3, "10101": 28, "10110": 15, "10111": 80,
    "11000": 16, "11001": 56, "11010": 21, "11011": 173, "11100": 11, "11101": 61, "11110": 28, "11111": 298,
}

# Rizopoulos (2006), ltm: An R package for latent variable modeling and item response theory analyses,
# Journal of Statistical Software 17(5), section 4.1: ltm(LSAT ~ z1), the 2PL on the logistic metric.
PUBLISHED_2PL_A = [0.8254, 0.7229, 0.8905, 0.6886, 0.6575]
PUBLISHED_2PL_B = [-3.3597, -1.3696, -0.2799, -1.8659, -3.1236]
PUBLISHED_2PL_LOGLIK = -2466.653


def response_matrix() -> np.ndarray:
    return matrix_from_patterns(PATTERN_COUNTS)
