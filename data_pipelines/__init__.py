"""Datasets, view specifications, GPU augmentation and DALI pipelines."""
