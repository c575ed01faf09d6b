"""Setup mode and the setup link (issue 18): the daemon's side in mode.py,
secret.py, link.py, service.py; the page's side in app.py and server.py."""
