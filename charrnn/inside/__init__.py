"""Looking inside a trained model: what every unit and gate computed per character (record), and how it is shown (view)."""
