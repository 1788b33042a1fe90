"""Data and protocol: datasets (built-in and uploaded), the split and candidates, the victims' prompts."""
