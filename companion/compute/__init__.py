"""How the companion uses the machine: thread counts for generation and training (`threads`), and the
ways of running the model for the day (`decode`: full precision or int8)."""
