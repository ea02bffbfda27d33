"""Evaluation of every model stage: held-out bits per byte, verifiable-task accuracy,
multiple-choice log-likelihood tasks, preference accuracy, sample generations, and n-gram
contamination between the eval sets and each stage's training data."""
