"""Hubitat Elevation hubs through the Maker API."""
