"""P-Scanner and the defence: the trigger agent, scanner training and scoring, baselines, scans, defend."""
