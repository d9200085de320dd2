"""The numerical core: item response theory with no I/O.

Plain arrays in, plain results out. Nothing here knows about databases,
Pub/Sub or HTTP, so every function can be tested and benchmarked alone.
"""
