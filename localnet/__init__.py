"""Local Solana cluster for tests: embedded LiteSVM JSON-RPC or solana-test-validator."""
