"""The PyTorch side: the model, the reference decoder (the executable spec), training and export.
Needs the [train] extra; the runtime never imports it."""
