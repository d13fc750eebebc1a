"""The stage models: features, train and evaluate steps, and their MLflow registry workflow."""
