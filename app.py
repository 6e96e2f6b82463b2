"""Hugging Face Space entry: build the GlowAI demo and launch it (nothing else lives here)."""

from apps.demo import serve

if __name__ == "__main__":
    serve()
