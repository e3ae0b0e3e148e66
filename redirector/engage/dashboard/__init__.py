"""The dashboard: one page (HTML, CSS, JS from ``static/``) served by the redirector.

Off unless ``[dashboard] enabled``. Its users log in with HTTP Basic (``[dashboard]
users``, password hashes from ``engage dashboard-user``); the page reads read-only copies
of the events and metrics APIs under ``dashboard/api/`` with the browser's Basic
credentials, so no key is ever handed to the page and no cookie is set. Flask stays in
engage.web (engage.web.dashboard): these modules hold the logic.
"""
