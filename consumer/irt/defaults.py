"""The estimator's defaults and the bounds it keeps the estimates in: plain numbers.

Apart from ``estimate`` so that the settings and the review page read them
without importing the compiled kernels (importing those compiles them on
the first run after an install: see ``consumer.warmup``).
"""

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MAX_ITERATIONS = 500
DEFAULT_MIN_RESPONSES = 20

#: Bounds every estimation path keeps the estimates in (an item that ends on one is reported).
A_BOUNDS = (0.02, 10.0)
D_BOUND = 25.0
C_BOUNDS = (1e-4, 0.5)
