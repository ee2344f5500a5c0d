"""Model lifecycle: the models the daemon knows, their state, and starting and stopping them in Xinference."""
