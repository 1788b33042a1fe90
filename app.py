"""BadRec Lab dashboard: `streamlit run app.py`. The router and frame; each page lives in pages/."""

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="BadRec Lab", page_icon=str(ROOT / "assets" / "icon.svg"), layout="wide")

navigation = st.navigation({
    "Start": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Attack": [
        st.Page("pages/dataset.py", title="Dataset", icon=":material/database:"),
        st.Page("pages/triggers.py", title="Triggers", icon=":material/bolt:"),
        st.Page("pages/attack.py", title="Attack", icon=":material/science:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    ],
    "Defend": [st.Page("pages/scanner.py", title="Scanner", icon=":material/policy:")],
    "Export": [st.Page("pages/reports.py", title="Reports", icon=":material/description:")],
}, expanded=True)
navigation.run()
