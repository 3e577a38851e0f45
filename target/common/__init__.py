"""What the wallet and the node share, and nothing else: the server runner, the SQLite journal,
JSON errors, shared limits, and the one way to start and stop a child process (child.py). It
imports neither the wallet (target/*.py) nor the node (target/node/), so the node can judge the
wallet without leaning on it."""
