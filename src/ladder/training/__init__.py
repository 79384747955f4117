"""Shared training mechanics as plain functions: loading, LoRA, merging, chat templates.

Importing this package imports nothing heavy; each module imports torch/transformers itself.
"""
