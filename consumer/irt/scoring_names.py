"""The scoring menu's names and the plausible values' default: plain values.

Apart from ``scoring`` so that the settings, the request schema's check
and the review page read them without importing the compiled kernels
(importing those compiles them on the first run after an install: see
``consumer.warmup``).
"""

EAP, MAP, ML, WLE, EAP_SUM = "EAP", "MAP", "ML", "WLE", "EAP-sum"
#: The scoring methods, by the names settings, requests and ``mirt_ability.method`` use.
METHODS = (EAP, MAP, ML, WLE, EAP_SUM)
_BY_NAME = {m.upper().replace("-", "").replace("_", ""): m for m in METHODS}

#: Plausible values drawn per student for the population's statistics (R mirt's and the Python port's default).
DEFAULT_DRAWS = 5
#: Fewest plausible values per student that Rubin's rules can combine (a between-draw variance needs two).
MIN_DRAWS, MAX_DRAWS = 2, 100


def method_name(name: str) -> str:
    """The canonical name of a scoring method (case-insensitive; EAPsum and EAP_SUM mean EAP-sum)."""
    canonical = _BY_NAME.get(str(name).strip().upper().replace("-", "").replace("_", ""))
    if canonical is None:
        raise ValueError(f"unknown scoring method {name!r}; choose one of {', '.join(METHODS)}")
    return canonical
