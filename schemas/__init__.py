"""The event contracts (JSON Schemas and examples), shipped inside the package as ``consumer.schemas``."""
