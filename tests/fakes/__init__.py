"""Stand-ins for services outside the product (the model server), run for real on loopback."""
