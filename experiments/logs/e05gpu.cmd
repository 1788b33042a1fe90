# on a lent NVIDIA H200 through the device tool (experiments/gpu_check.sh step 3; killed by its 230 s timeout at step ~600 of 1007)
PILOT='{"n_choice": 30000, "n_echo": 30000, "history_epochs": 1.0, "min_candidates": 5, "max_candidates": 12, "choice_history_min": 3, "noise_prob": 0.5, "prefix_share": 0.5, "batch_size": 64, "probe_every": 250}' bash experiments/gpu_check.sh
