"""The product: detector, then classifier on each detected crop, then boxes people can read."""
