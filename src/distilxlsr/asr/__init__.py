"""Downstream speech recognition (docs/design.md, "Downstream ASR"): a character vocabulary,
CTC fine-tuning on the one training loop, n-gram language models and CTC beam search, CER/WER,
and the recogniser a user loads."""
