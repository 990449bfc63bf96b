"""HTTP routes, one module per resource; each is thin and calls the services."""
