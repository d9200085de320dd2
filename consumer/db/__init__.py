"""The database edge: engine factory, migrations, and every SQL statement the service issues."""
