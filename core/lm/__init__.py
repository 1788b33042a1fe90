"""Language models and training: loading (tiny, GGUF, Hugging Face; quantization, LoRA), fine-tuning, scoring."""
