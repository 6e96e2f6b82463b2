"""Front ends over `core`: the Gradio demo (apps/demo) and the Streamlit studio (apps/labeler)."""
