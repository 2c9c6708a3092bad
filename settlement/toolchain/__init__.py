"""Build tools for the on-chain program: our SBF linker and the `make program` driver."""
