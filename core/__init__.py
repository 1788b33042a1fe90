"""BadRec Lab core library: data, protocol, attack, models, scanner, store.

Nothing here imports streamlit; the dashboard and the CLI both call these
functions, so every number on screen can be reproduced from the command line.
"""

__version__ = "0.1.0"
