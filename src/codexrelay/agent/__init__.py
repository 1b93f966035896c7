"""The private agent: dials out to the relay and runs only what its own config allows."""
