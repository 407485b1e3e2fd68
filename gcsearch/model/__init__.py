"""The candidate as a PyTorch model: the blocks (context -> transform -> fusion), the ResNet builder, and the cost
(FLOPs, params, latency). Everything here imports torch; nothing here is imported until a model is needed."""
