"""HTTP routes: each module parses, calls one domain function, renders."""
