"""The wizard app: clusters and servers, runs and their steps, the carp layer and the SSH transport."""
