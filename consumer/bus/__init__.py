"""The Pub/Sub edge: event contracts, the subscriber loop, the publisher, and a local server for tests."""
