"""BadRec Lab core library, one subpackage per layer (docs/ARCHITECTURE.md): data, lm, attack, pscanner, runs,
views and cli over a few foundation modules at this level.

Nothing here imports streamlit; the dashboard and the CLI both call these
functions, so every number on screen can be reproduced from the command line.
"""

__version__ = "0.1.0"
