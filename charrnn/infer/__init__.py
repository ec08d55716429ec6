"""Using a trained model: sampling, scoring text, predicting, translating, generating from a condition."""
