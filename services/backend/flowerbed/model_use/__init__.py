"""Using a trained model: checkpoints loaded as PyTorch modules, predictions and exports."""
