"""Curation of synthetic datasets and error analysis of models: the store (decisions, tags,
notes, mask revisions, audit), manifest filtering, exports and stakeholder reports. Used by the
Streamlit studio in apps/labeler; imports no UI library."""
