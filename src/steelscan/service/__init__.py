"""The inspection service: a web API and a live dashboard over the station (`steelscan serve`)."""
