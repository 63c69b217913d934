"""One training engine for every task: device, torchrun/DDP, AMP, accumulation, time budget, run folder,
checkpoint and resume. The task plug-ins (`steelscan.tasks`) supply data, model arguments, loss and evaluation."""
