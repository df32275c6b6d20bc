"""Publishing a finished run: dataset cards and the Hugging Face folder layout."""
