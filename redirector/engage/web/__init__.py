"""The redirector's HTTP face (Flask): the app factory, the click and pixel path, the
events, metrics and /v1/track APIs, the dashboard routes. The only package importing Flask."""
