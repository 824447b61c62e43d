"""Web services: the work behind the routes, free of HTTP details where possible."""
