"""engage: settings, link store, events and the redirector shared by every engage process."""
