"""What the tests share: simulated platform data, the Pub/Sub broker, the browser, stand-ins of Cloud SQL.

Test modules import from here and never from one another, and the
benchmarks import from here too, never a test module.
"""
