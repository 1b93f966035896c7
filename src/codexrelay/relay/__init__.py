"""The public relay: web app host, API, and broker between phones and agents."""
