"""Proxy training: its settings (`config`, torch-free), the datasets as device tensors, and the training loop.

Import the modules themselves: this package imports nothing, so a study file's [proxy] table is checked
without loading torch.
"""
