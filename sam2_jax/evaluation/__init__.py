"""Evaluation: J/F metrics as the DAVIS 2017 and SA-V toolkits define them, and the protocols of eval.py."""
