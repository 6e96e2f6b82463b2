"""Streamlit curation studio (st.navigation over a pages folder). Not built yet: see the studio issue."""
