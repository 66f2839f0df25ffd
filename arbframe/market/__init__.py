"""The simulated venues: a seeded simulated market, simulated accounts and exchanges built on paper fills,
and venue routing (which of a connector's calls go to the simulated market, a paper account or the real venue)."""
