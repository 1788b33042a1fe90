"""BadRec: fake users and triggered titles, the victim recommenders, attack runs end to end and sweeps of them."""
