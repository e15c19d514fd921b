"""Networks, losses, augmentation, datasets and the training loop (imports ops, torch_utils, dnnlib)."""
