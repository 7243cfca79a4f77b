"""The API's routes, one module per concern: `query` (embed then search), `items`, `ops`, `admin`."""
